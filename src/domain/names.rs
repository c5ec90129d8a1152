//! Name and domain normalisation for automatic mapping (docs/dataset.md "Linking";
//! reference/domain.md §1 "Automap": exact matches after normalising, never fuzzy).

/// Legal-form words dropped before comparing names.
const LEGAL_WORDS: [&str; 3] = ["pty", "ltd", "limited"];

/// Words too common to count as a shared word in a suggestion (company and product names).
const COMMON_WORDS: [&str; 22] = [
    "pty",
    "ltd",
    "limited",
    "the",
    "and",
    "of",
    "for",
    "with",
    "co",
    "group",
    "services",
    "nz",
    "au",
    "inc",
    "microsoft",
    "365",
    "licence",
    "licences",
    "license",
    "licenses",
    "legacy",
    "item",
];

/// The words of a name: lowercase; every character that is not a letter or digit splits.
fn words(name: &str) -> impl Iterator<Item = String> + '_ {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// A company name normalised for exact comparison: lowercase; every character that is not a
/// letter or a digit becomes a space; the words `pty`, `ltd` and `limited` are dropped; the
/// rest is joined without spaces. `Atlas Outsourcing Pty. Ltd.` → `atlasoutsourcing`,
/// `O'Brien Plumbing` → `obrienplumbing`.
pub fn normalise_name(name: &str) -> String {
    words(name)
        .filter(|w| !LEGAL_WORDS.contains(&w.as_str()))
        .collect()
}

/// A website or domain normalised for comparison: lowercase, trimmed, without a leading
/// `https://`/`http://` and `www.`, cut at the first `/` (and at a port or query), without a
/// trailing dot. `https://www.atlas.com.au/` → `atlas.com.au`. Empty when nothing is left.
pub fn normalise_domain(website: &str) -> String {
    let mut s = website.trim().to_lowercase();
    for scheme in ["https://", "http://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            s = rest.to_string();
            break;
        }
    }
    if let Some(rest) = s.strip_prefix("www.") {
        s = rest.to_string();
    }
    let cut = s.find(['/', '?', '#', ':']).unwrap_or(s.len());
    s.truncate(cut);
    s.trim_end_matches('.').trim().to_string()
}

/// The distinctive words of a name (for suggestions): lowercase words without legal forms and
/// very common words, at least two characters long.
pub fn distinctive_words(name: &str) -> Vec<String> {
    let mut out: Vec<String> = words(name)
        .filter(|w| w.chars().count() >= 2 && !COMMON_WORDS.contains(&w.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_as_the_dataset_documents() {
        for n in [
            "Atlas Outsourcing Pty. Ltd.",
            "ATLAS OUTSOURCING PTY LTD",
            "Atlas Outsourcing, Pty Limited",
            "Atlas Outsourcing",
            "atlas   outsourcing",
        ] {
            assert_eq!(normalise_name(n), "atlasoutsourcing", "{n}");
        }
        assert_eq!(normalise_name("O'Brien Plumbing"), "obrienplumbing");
        assert_eq!(normalise_name("OBrien Plumbing"), "obrienplumbing");
        // Not fuzzy: a different word is a different name.
        assert_ne!(
            normalise_name("CSP Tech Limited"),
            normalise_name("CSP Technology")
        );
        assert_eq!(normalise_name("Pty Ltd"), "");
    }

    #[test]
    fn domains_normalise() {
        assert_eq!(
            normalise_domain("https://www.atlas.com.au/"),
            "atlas.com.au"
        );
        assert_eq!(normalise_domain(" WWW.Atlas.com.au "), "atlas.com.au");
        assert_eq!(
            normalise_domain("http://atlas.com.au/about"),
            "atlas.com.au"
        );
        assert_eq!(normalise_domain("atlas.com.au:443"), "atlas.com.au");
        assert_eq!(normalise_domain("atlas.com.au."), "atlas.com.au");
        assert_eq!(normalise_domain(""), "");
    }

    #[test]
    fn distinctive_words_drop_legal_forms() {
        assert_eq!(
            distinctive_words("Redgum Wealth Pty Ltd"),
            vec!["redgum".to_string(), "wealth".to_string()]
        );
        assert_eq!(distinctive_words("City Wealth"), vec!["city", "wealth"]);
    }
}
