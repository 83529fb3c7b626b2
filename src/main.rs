//! `geode` command line: parse, set up logging, hand off to `app`. Exit codes: 0 ok,
//! 64 bad config, 1 failure to start, 2 usage.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use geode::app;
use geode::snapshot::ClientSpec;

#[derive(Parser)]
#[command(
    name = "geode",
    version,
    about = "Authoritative DNS that answers with the nearest healthy region"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS and the admin HTTP endpoints.
    Serve {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// DNS listen address (UDP and TCP); repeat for several. Replaces server.dns_listen.
        #[arg(long = "dns-listen")]
        dns_listen: Vec<SocketAddr>,
        /// Admin HTTP listen address. Replaces server.http_listen.
        #[arg(long = "http-listen")]
        http_listen: Option<SocketAddr>,
    },
    /// Validate a config file (GeoIP database included); binds nothing.
    Check {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Show why a client gets its answer, without starting a server.
    Explain {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Client address, or ECS subnet as IP/LEN.
        #[arg(long)]
        client: ClientSpec,
        /// Resolver address (used when the ECS subnet is unusable).
        #[arg(long)]
        resolver: Option<std::net::IpAddr>,
        /// The GSLB name.
        name: String,
        /// A or AAAA.
        #[arg(default_value = "A")]
        qtype: String,
    },
}

fn init_logging() {
    // hickory-server logs every query at INFO; that halves throughput, so it stays at
    // warn unless RUST_LOG says otherwise. rustls-platform-verifier logs an ERROR of its
    // own for every certificate it rejects, i.e. on every probe of a bad endpoint; the
    // probe's flip line already says why, once (DESIGN.md: one line per flip).
    // It stays off under RUST_LOG too, unless RUST_LOG names it.
    const QUIET_VERIFIER: &str = "rustls_platform_verifier=off";
    let directives = match std::env::var("RUST_LOG") {
        Ok(s) if s.contains("rustls_platform_verifier") => s,
        Ok(s) if !s.trim().is_empty() => format!("{s},{QUIET_VERIFIER}"),
        _ => format!("info,hickory_server=warn,hickory_net=warn,{QUIET_VERIFIER}"),
    };
    let filter = EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET_VERIFIER}")));
    // Colours only on a terminal: journald and log shippers get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check { config } => app::check(&config),
        Command::Explain {
            config,
            mut client,
            resolver,
            name,
            qtype,
        } => {
            client.resolver = resolver;
            app::explain(&config, client, &name, &qtype)
        }
        Command::Serve {
            config,
            dns_listen,
            http_listen,
        } => {
            init_logging();
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start runtime: {e}");
                    std::process::exit(app::EXIT_RUNTIME);
                }
            };
            match rt.block_on(app::serve(
                config,
                app::Overrides {
                    dns_listen,
                    http_listen,
                    own_http: None,
                },
            )) {
                Ok(()) => 0,
                Err(e) => {
                    // Once, through the log (journald and the terminal both get it); a
                    // config error is one line per problem, as `geode check` prints them.
                    for line in e.to_string().lines() {
                        tracing::error!("{line}");
                    }
                    e.exit_code()
                }
            }
        }
    };
    std::process::exit(code);
}
