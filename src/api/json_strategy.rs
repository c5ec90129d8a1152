//! Test-only: random JSON for the response parsers' property tests — any shape, with object
//! keys and strings drawn partly from what the API really sends, so parsers get past their
//! first checks and meet wrong types, missing fields and odd nesting deep inside.

use proptest::prelude::*;
use serde_json::Value;

/// JSON values up to depth 4 whose object keys are often one of `keys` and whose strings are
/// often one of `samples` (dates, stock codes, statuses the API uses).
pub fn json_with(
    keys: &'static [&'static str],
    samples: &'static [&'static str],
) -> BoxedStrategy<Value> {
    let key = prop_oneof![
        prop::sample::select(keys).prop_map(str::to_string),
        "[a-zA-Z_@.]{1,10}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(samples).prop_map(Value::from),
        ".{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}
