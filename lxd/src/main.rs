//! `lxd`: the daemon and its helper commands. The namespace helpers (`forkstart`, `forkexec`,
//! `forkfile`) are dispatched first, in a plain single-threaded process, before any tokio runtime
//! exists: entering namespaces and forking without exec are unsafe in a multi-threaded process.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(name = "lxd", version = lxd::SERVER_VERSION, about = "The LXD container manager (daemon)")]
struct Cli {
    /// Group which owns the shared socket
    #[arg(long, global = true)]
    group: Option<String>,
    /// Path to the log file
    #[arg(long, global = true)]
    logfile: Option<PathBuf>,
    /// Show all debug messages
    #[arg(short, long, global = true)]
    debug: bool,
    /// Show all information messages
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Configure the LXD daemon
    Init {
        /// Automatic (non-interactive) mode
        #[arg(long)]
        auto: bool,
        /// Pre-seed mode, expects YAML config from stdin
        #[arg(long)]
        preseed: bool,
        /// Dump YAML config to stdout
        #[arg(long)]
        dump: bool,
        /// Storage backend to use (btrfs, dir or zfs)
        #[arg(long = "storage-backend", default_value = "dir")]
        storage_backend: String,
        /// Storage pool to use or create: an existing zpool or dataset, or a btrfs directory
        /// (the new pool, "default", takes it as its source)
        #[arg(long = "storage-pool")]
        storage_pool: Option<String>,
        /// Setup device based storage using DEVICE
        #[arg(long = "storage-create-device")]
        storage_create_device: Option<String>,
        /// Size in GiB of the new loop device
        #[arg(long = "storage-create-loop")]
        storage_create_loop: Option<u64>,
        /// Managed bridge to create with --auto ("none" for no network; default: the first
        /// free lxdbrN)
        #[arg(long = "network-bridge")]
        network_bridge: Option<String>,
        /// IPv4 address of that bridge (CIDR, "auto" or "none")
        #[arg(long = "network-ipv4", default_value = "auto")]
        network_ipv4: String,
    },
    /// Wait for LXD to be ready to process requests
    Waitready {
        /// Number of seconds to wait before giving up
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
    /// Tell LXD to shutdown all containers and exit
    Shutdown {
        /// Number of seconds to wait before giving up
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
    /// Show the version
    Version,
}

fn lxd_dir() -> PathBuf {
    std::env::var_os("LXD_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/lxd"))
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("Error: {e}");
    std::process::exit(1);
}

/// The hidden helpers; returns only when argv is not one of them.
fn dispatch_helpers() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("forkstart") => {
            let Some(dir) = args.get(2) else {
                fail("usage: lxd forkstart RUN_DIR")
            };
            match lxd_runtime::monitor::forkstart(std::path::Path::new(dir)) {
                Ok(()) => std::process::exit(0),
                Err(e) => fail(e),
            }
        }
        Some("forkexec") => {
            let Some(json) = args.get(2) else {
                fail("usage: lxd forkexec JSON")
            };
            let req: lxd_runtime::attach::ExecRequest = match serde_json::from_str(json) {
                Ok(r) => r,
                Err(e) => fail(format!("invalid exec request: {e}")),
            };
            lxd_runtime::attach::forkexec(&req)
        }
        Some("netcat") => {
            let Some(sock) = args.get(2) else {
                fail("usage: lxd netcat @SOCKET NAME")
            };
            match lxd::migration::rsync::netcat(sock) {
                Ok(()) => std::process::exit(0),
                Err(e) => fail(e),
            }
        }
        Some("forkmount") => {
            let Some(json) = args.get(2) else {
                fail("usage: lxd forkmount JSON")
            };
            let req: lxd_runtime::hotplug::MountRequest = match serde_json::from_str(json) {
                Ok(r) => r,
                Err(e) => fail(format!("invalid mount request: {e}")),
            };
            lxd_runtime::hotplug::forkmount(&req)
        }
        Some("forkfile") => {
            let Some(json) = args.get(2) else {
                fail("usage: lxd forkfile JSON")
            };
            let req: lxd_runtime::files::FileRequest = match serde_json::from_str(json) {
                Ok(r) => r,
                Err(e) => fail(format!("invalid file request: {e}")),
            };
            lxd_runtime::files::forkfile(&req)
        }
        _ => {}
    }
}

fn init_logging(cli: &Cli) {
    let level = if cli.debug {
        "debug"
    } else if cli.verbose {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LXD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &cli.logfile {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init(),
            Err(e) => fail(format!("failed to open log file {}: {e}", path.display())),
        },
        None => builder.with_writer(std::io::stderr).init(),
    }
}

async fn waitready(dir: &std::path::Path, timeout: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    let c = lxd::local_client::LocalClient::new(dir)?;
    loop {
        if c.ready().await {
            return Ok(());
        }
        if timeout > 0 && start.elapsed() > Duration::from_secs(timeout) {
            anyhow::bail!("LXD still not running after {timeout}s timeout");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn shutdown(dir: &std::path::Path, timeout: u64) -> anyhow::Result<()> {
    let c = lxd::local_client::LocalClient::new(dir)?;
    // The listener closes as soon as shutdown starts; wait for the process itself, which exits
    // only once every instance is stopped.
    let server = c.query("GET", "/1.0", None).await?;
    let pid = server["environment"]["server_pid"].as_i64().unwrap_or(0);
    c.query("PUT", "/internal/shutdown", None).await?;
    let start = Instant::now();
    let sock = lxd::local_client::socket_path(dir);
    loop {
        let gone = if pid > 0 {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true)
        } else {
            tokio::net::UnixStream::connect(&sock).await.is_err()
        };
        if gone {
            return Ok(());
        }
        if timeout > 0 && start.elapsed() > Duration::from_secs(timeout) {
            anyhow::bail!("LXD still running after {timeout}s timeout");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug)]
struct InitArgs {
    auto: bool,
    preseed: bool,
    dump: bool,
    backend: String,
    /// The new pool's source (`--storage-pool` or `--storage-create-device`).
    source: Option<String>,
    loop_size: Option<u64>,
    bridge: Option<String>,
    ipv4: String,
}

/// `--auto`: like LXD, create a bridge only when no managed network exists yet. When the bridge
/// name was not given, the first free `lxdbrN` is taken, and the next one if another process
/// took it meanwhile.
async fn init_auto(c: &lxd::local_client::LocalClient, a: &InitArgs) -> anyhow::Result<()> {
    let networks = c.query("GET", "/1.0/networks?recursion=1", None).await?;
    let has_managed = networks
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n["managed"].as_bool() == Some(true));
    let explicit = a.bridge.as_deref();
    let want_bridge = explicit != Some("none") && !has_managed;
    let mut from = 0;
    for _ in 0..10 {
        let name = match explicit {
            Some(n) if n != "none" => n.to_string(),
            _ => lxd::init::first_free_bridge(from),
        };
        let mut p =
            lxd::init::auto_preseed(&a.backend, "default", want_bridge.then_some(name.as_str()));
        if let Some(gib) = a.loop_size {
            p.storage_pools[0]
                .config
                .insert("size".into(), format!("{gib}GiB"));
        }
        if let Some(src) = &a.source {
            p.storage_pools[0]
                .config
                .insert("source".into(), src.clone());
        }
        if let Some(n) = p.networks.first_mut() {
            n.config.insert("ipv4.address".into(), a.ipv4.clone());
        }
        match lxd::init::apply(c, &p).await {
            Err(e)
                if want_bridge
                    && explicit.is_none()
                    && e.to_string()
                        .contains(&format!("\"{name}\" already exists")) =>
            {
                from = name.trim_start_matches("lxdbr").parse::<u32>().unwrap_or(0) + 1;
            }
            other => return other,
        }
    }
    anyhow::bail!("No free lxdbrN bridge name found")
}

async fn init(dir: &std::path::Path, a: InitArgs) -> anyhow::Result<()> {
    let (auto, preseed, dump) = (a.auto, a.preseed, a.dump);
    let c = lxd::local_client::LocalClient::new(dir)?;
    if dump {
        let server = c.query("GET", "/1.0", None).await?;
        let pools = c
            .query("GET", "/1.0/storage-pools?recursion=1", None)
            .await?;
        let profiles = c.query("GET", "/1.0/profiles?recursion=1", None).await?;
        let mut p = lxd::init::Preseed {
            config: serde_json::from_value(server["config"].clone()).unwrap_or_default(),
            ..Default::default()
        };
        for pool in pools.as_array().into_iter().flatten() {
            p.storage_pools.push(serde_json::from_value(pool.clone())?);
        }
        for prof in profiles.as_array().into_iter().flatten() {
            p.profiles.push(serde_json::from_value(prof.clone())?);
        }
        let networks = c.query("GET", "/1.0/networks?recursion=1", None).await?;
        for n in networks.as_array().into_iter().flatten() {
            if n["managed"].as_bool() == Some(true) {
                p.networks.push(serde_json::from_value(n.clone())?);
            }
        }
        print!("{}", yaml_serde::to_string(&p)?);
        return Ok(());
    }
    let p = if preseed {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        yaml_serde::from_str(&text).map_err(|e| anyhow::anyhow!("Invalid preseed YAML: {e}"))?
    } else if auto {
        return init_auto(&c, &a).await;
    } else {
        let server = c.query("GET", "/1.0", None).await?;
        let drivers: Vec<String> = server["environment"]["storage_supported_drivers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["Name"].as_str().map(str::to_string))
            .collect();
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut out = std::io::stdout();
        let (p, print) = lxd::init::interactive(
            &mut input,
            &mut out,
            &drivers,
            &lxd::init::first_free_bridge(0),
        )?;
        if print {
            println!("{}", yaml_serde::to_string(&p)?);
        }
        p
    };
    lxd::init::apply(&c, &p).await
}

fn main() {
    dispatch_helpers();
    let cli = Cli::parse();
    init_logging(&cli);
    let dir = lxd_dir();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(format!("failed to start the async runtime: {e}")),
    };
    let res = rt.block_on(async {
        match cli.cmd {
            None => {
                lxd::run::serve(lxd::run::DaemonOptions {
                    dir,
                    group: cli.group.clone(),
                })
                .await
            }
            Some(Cmd::Waitready { timeout }) => waitready(&dir, timeout).await,
            Some(Cmd::Shutdown { timeout }) => shutdown(&dir, timeout).await,
            Some(Cmd::Version) => {
                println!("{}", lxd::SERVER_VERSION);
                Ok(())
            }
            Some(Cmd::Init {
                auto,
                preseed,
                dump,
                storage_backend,
                storage_pool,
                storage_create_device,
                storage_create_loop,
                network_bridge,
                network_ipv4,
            }) => {
                init(
                    &dir,
                    InitArgs {
                        auto,
                        preseed,
                        dump,
                        backend: storage_backend,
                        source: storage_create_device.or(storage_pool),
                        loop_size: storage_create_loop,
                        bridge: network_bridge,
                        ipv4: network_ipv4,
                    },
                )
                .await
            }
        }
    });
    // Do not wait for blocking tasks still running (a stuck tool must not keep us alive).
    rt.shutdown_timeout(Duration::from_secs(2));
    if let Err(e) = res {
        fail(e);
    }
}
