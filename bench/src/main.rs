//! `gatrix-chat-bench`: the operators' latency benchmark.
//!
//! A skeleton for now: the scenarios (fanout, ingest, connect, sweep) arrive
//! with the benchmark issue. See docs/benchmarks.md.

fn main() {
    eprintln!("gatrix-chat-bench: no scenarios yet; see docs/benchmarks.md");
    std::process::exit(2);
}
