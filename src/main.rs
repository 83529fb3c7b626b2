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
    /// DNSSEC keys: make one, print the DS records for the parent.
    Dnssec {
        #[command(subcommand)]
        command: DnssecCommand,
    },
    /// Change routing at runtime on a running server (drain, weight, force; see README
    /// "Runtime overrides"). Needs `[admin]` in its config.
    Admin {
        /// The server's admin HTTP address.
        #[arg(long, global = true, default_value = "http://127.0.0.1:9153")]
        server: String,
        /// File holding the bearer token; else the GEODE_ADMIN_TOKEN environment variable.
        #[arg(long = "token-file", global = true)]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum DnssecCommand {
    /// Write a BIND-format key pair (a combined signing key, flags 257).
    Keygen {
        /// The zone the key signs.
        #[arg(long)]
        zone: String,
        /// ecdsap256sha256 (algorithm 13) or ed25519 (algorithm 15).
        #[arg(long, default_value = "ecdsap256sha256")]
        algorithm: String,
        /// Directory for the .key and .private files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Print the DS records of a signed zone's keys (SHA-256), for the parent zone.
    Ds {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The zone.
        zone: String,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Drain a region (like `drain = true`, at runtime).
    Drain {
        /// Region name.
        region: String,
        /// Why (logged, shown in /status and /explain).
        #[arg(long, default_value = "")]
        reason: String,
        /// Undo by itself after this long ("30m", "2h").
        #[arg(long = "for")]
        ttl: Option<String>,
    },
    /// Undo a runtime drain (a drain = true in the config stays).
    Undrain {
        /// Region name.
        region: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set a region's weight, for every service or one; `clear` removes the override.
    Weight {
        /// Region name.
        region: String,
        /// The weight (0 = standby), or `clear`.
        weight: String,
        /// Only for this service.
        #[arg(long)]
        service: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        /// Undo by itself after this long.
        #[arg(long = "for")]
        ttl: Option<String>,
    },
    /// Force an endpoint up or down whatever its probes say, or clear that.
    Force {
        /// REGION/ADDRESS.
        endpoint: String,
        /// up, down or clear.
        #[arg(value_parser = ["up", "down", "clear"])]
        state: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        /// Undo by itself after this long.
        #[arg(long = "for")]
        ttl: Option<String>,
    },
    /// List every override (active, expired, cleared, dangling).
    List {
        /// Print the server's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The request an admin subcommand makes, or a usage error.
fn admin_request(cmd: AdminCommand) -> Result<geode::admin_cli::Request, String> {
    use geode::admin_cli::{Request, parse_weight, split_endpoint};
    Ok(match cmd {
        AdminCommand::Drain {
            region,
            reason,
            ttl,
        } => Request::Drain {
            region,
            reason,
            ttl,
        },
        AdminCommand::Undrain { region, reason } => Request::Undrain { region, reason },
        AdminCommand::Weight {
            region,
            weight,
            service,
            reason,
            ttl,
        } => Request::Weight {
            region,
            weight: parse_weight(&weight)?,
            service,
            reason,
            ttl,
        },
        AdminCommand::Force {
            endpoint,
            state,
            reason,
            ttl,
        } => {
            let (region, address) = split_endpoint(&endpoint)?;
            Request::Force {
                region,
                address,
                state,
                reason,
                ttl,
            }
        }
        AdminCommand::List { json } => Request::List { json },
    })
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
        Command::Dnssec { command } => match command {
            DnssecCommand::Keygen {
                zone,
                algorithm,
                out,
            } => geode::dnssec::cli::keygen(&zone, &algorithm, &out),
            DnssecCommand::Ds { config, zone } => geode::dnssec::cli::ds(&config, &zone),
        },
        Command::Admin {
            server,
            token_file,
            command,
        } => match admin_request(command) {
            Ok(req) => {
                geode::admin_cli::run(&geode::admin_cli::Connection { server, token_file }, req)
            }
            Err(e) => {
                eprintln!("geode admin: {e}");
                2
            }
        },
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
