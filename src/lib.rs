//! geode: an authoritative DNS server that answers every query with the nearest healthy
//! region for the client (GSLB). See README.md for the operator's view and
//! ARCHITECTURE.md for the map of the code.
//!
//! ```text
//!  UDP ─► dns::udp loops (recvmmsg) ─► answer cache ─► dns::fast ─► Handler::ordinary_udp
//!  TCP ─► dns::tcp loop ──────────────────────────────────────────► Handler::ordinary
//!         (hickory decodes and encodes records; its Server is not used)
//!                 │  Snapshot (one ArcSwap load per batch or message)
//!                 │     ├─ model   (config, pure)
//!                 │     ├─ zones   (hickory records), fast (wire tables)
//!                 │     └─ geo     (mmdb reader)
//!                 ├─► model::client_address   usable ECS subnet > packet source
//!                 ├─► geo::locate(client)  client_networks > GeoIP > unknown
//!                 └─► route::route(model, client, health)   pure, no I/O
//!  health tasks ─► HealthCell atomics (read lock-free by route)
//!  reload (SIGHUP, file watch) ─► config::load ─► Snapshot::build ─► swap
//!  admin API (/api/v1) ─► admin store ─► overrides::AdminView, published with the
//!                         snapshot and read by route through route::Live
//!  cluster (/cluster/v1) ─► peers' votes ─► cluster::votes::combine ─► HealthCells;
//!                           peers' override sets ─► overrides::merge ─► admin store
//! ```

pub mod admin;
pub mod admin_api;
pub mod admin_cli;
pub mod app;
pub mod cluster;
pub mod config;
pub mod countries;
pub mod dns;
pub mod dnssec;
pub mod geo;
pub mod health;
pub mod http;
pub mod metrics;
pub mod model;
pub mod overrides;
pub mod reload;
pub mod route;
pub mod snapshot;
pub mod state;
