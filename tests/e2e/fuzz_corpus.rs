//! Replays the fuzz harness's saved findings (tests/data/fuzz) through the same checks
//! as `cargo run --release --example fuzz`: fast vs ordinary path byte for byte, the
//! answer cache, the config parser.

#[path = "../../examples/fuzz.rs"]
mod fuzz;

use crate::harness::repo;

#[test]
fn fuzz_corpus_replays_clean() {
    let dir = repo().join("tests/data/fuzz");
    let n = fuzz::replay(&dir, &repo()).unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 1, "the corpus holds at least the seed input");
}

#[test]
fn fuzz_a_short_run_finds_nothing_and_compares_fast_with_ordinary() {
    let mut target = fuzz::Target::new(&repo());
    let seeds = fuzz::seeds();
    let src = "81.2.69.142:5300".parse().unwrap();
    for (i, s) in seeds.iter().enumerate() {
        let mut rng = fuzz::Rng::new(i as u64);
        let mut pkt = s.clone();
        target
            .dns(&pkt, src)
            .unwrap_or_else(|e| panic!("seed {i}: {e}"));
        fuzz::mutate(&mut rng, &mut pkt, &seeds[(i + 1) % seeds.len()]);
        target
            .dns(&pkt, src)
            .unwrap_or_else(|e| panic!("seed {i} mutated: {e}"));
    }
    assert!(
        target.compared >= 100,
        "fast path answered only {}",
        target.compared
    );
}
