//! `gatrix-chat-bench`: the operators' latency benchmark. Speaks the Socket.IO
//! v4 contract (docs/protocol.md) itself, so it can target any server that
//! implements it. See docs/benchmarks.md.

mod client;
mod proto;
mod report;
mod runner;
mod scenario;
mod server_side;
mod svg;
mod timeline;
mod timer;
mod track;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use client::{Target, Tokens};
use std::net::{IpAddr, ToSocketAddrs};

#[derive(Parser)]
#[command(
    name = "gatrix-chat-bench",
    version,
    about = "Latency benchmark for Socket.IO v4 chat servers"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Clone)]
pub struct Common {
    /// Server address, host:port. Repeat it (or give a comma list) for
    /// several instances of one cluster: connections are spread over them
    /// round-robin (see docs/benchmarks.md, "Several instances").
    #[arg(
        long,
        visible_alias = "url",
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:3001"
    )]
    pub server: Vec<String>,
    /// HS256 secret to mint one JWT per connection (sub = bench-u<N>).
    #[arg(long, global = true, env = "JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// Shell command printing one token to use for every connection.
    #[arg(long, global = true)]
    pub token_cmd: Option<String>,
    /// Comma-separated source addresses for outgoing connections (round-robin).
    #[arg(long, global = true, value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,
    /// Worker threads (each one current-thread runtime driving many connections).
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
    /// Connection attempts in flight at once.
    #[arg(long, global = true, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Create the channels through the REST API (else give --channel-ids).
    #[arg(long, global = true, default_value_t = true, action = clap::ArgAction::Set)]
    pub create_channels: bool,
    /// Existing channel ids to use when --create-channels=false.
    #[arg(long, global = true, value_delimiter = ',')]
    pub channel_ids: Vec<String>,
    /// Distinguishes user ids between benchmark processes run side by side.
    #[arg(long, global = true, default_value = "")]
    pub user_prefix: String,
    /// Write a JSON result here.
    #[arg(long, global = true)]
    pub json: Option<String>,
    /// Write the latency percentile distribution (HdrHistogram .hgrm) here.
    #[arg(long, global = true)]
    pub hgrm: Option<String>,
    /// Write a latency-by-percentile plot (SVG) here.
    #[arg(long, global = true)]
    pub svg: Option<String>,
    /// Offer WebSocket permessage-deflate (as browsers do) and inflate
    /// compressed frames; fails if the server does not accept it.
    #[arg(long, global = true)]
    pub deflate: bool,
}

#[derive(Subcommand)]
enum Scenario {
    /// C channels x M members, S senders at an open-loop aggregate rate.
    Fanout(scenario::fanout::FanoutArgs),
    /// Acked sends/s with a window of outstanding sends per connection.
    Ingest(scenario::ingest::IngestArgs),
    /// Connection set-up rate, and server memory per idle connection.
    Connect(scenario::connect::ConnectArgs),
    /// Fanout at rising rates until p99 passes a bound.
    Sweep(scenario::sweep::SweepArgs),
}

impl Common {
    /// One target per `--server`, in the order given (instance i is the
    /// i-th address; the same address twice is two instances).
    pub fn targets(&self) -> Result<Vec<Target>> {
        let tokens = match (&self.jwt_secret, &self.token_cmd) {
            (_, Some(cmd)) => {
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .output()?;
                if !out.status.success() {
                    bail!(
                        "--token-cmd failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                Tokens::Fixed(String::from_utf8(out.stdout)?.trim().to_owned())
            }
            (Some(s), None) => Tokens::Secret(s.as_bytes().to_vec()),
            (None, None) => bail!("give --jwt-secret (or JWT_SECRET) or --token-cmd"),
        };
        if self.server.is_empty() {
            bail!("give at least one --server");
        }
        self.server
            .iter()
            .map(|server| {
                let addr = server
                    .to_socket_addrs()
                    .with_context(|| format!("resolving {server}"))?
                    .next()
                    .context("no address")?;
                Ok(Target {
                    host: server.clone(),
                    addr,
                    source_ips: self.source_ips.clone(),
                    tokens: tokens.clone(),
                    deflate: self.deflate,
                })
            })
            .collect()
    }

    /// The `--server` addresses as one string, for titles and JSON.
    pub fn servers(&self) -> String {
        self.server.join(",")
    }

    pub fn user(&self, i: usize) -> String {
        format!("bench-{}u{i}", self.user_prefix)
    }
}

fn main() {
    let cli = Cli::parse();
    let nofile = runner::raise_nofile();
    let r = match &cli.scenario {
        Scenario::Fanout(a) => scenario::fanout::run(&cli.common, a, nofile),
        Scenario::Ingest(a) => scenario::ingest::run(&cli.common, a, nofile),
        Scenario::Connect(a) => scenario::connect::run(&cli.common, a, nofile),
        Scenario::Sweep(a) => scenario::sweep::run(&cli.common, a, nofile),
    };
    if let Err(e) = r {
        eprintln!("gatrix-chat-bench: {e:#}");
        std::process::exit(1);
    }
}
