//! The deterministic world generator (`--customers N --seed S`).

use super::world::World;

/// Options of a generated world.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub customers: usize,
    pub seed: u64,
    pub today: chrono::NaiveDate,
}

pub fn generate(opts: &GenOptions) -> World {
    let mut w = World::default();
    w.meta.seed = Some(opts.seed);
    w.meta.today = Some(opts.today);
    w
}
