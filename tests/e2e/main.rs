//! End-to-end tests: the real `geode` binary on loopback, real DNS clients (hickory-net,
//! dig), real HTTP. One test binary, as in hickory-dns, so the binary is built once.

mod admin;
mod config_check;
mod differential;
mod dnssec;
mod first_run;
mod fleet;
mod fuzz_corpus;
mod hardening;
mod harness;
mod health;
mod metrics;
mod protocol;
mod realworld;
mod reload;
mod routing;
mod smoke;
mod tools;
