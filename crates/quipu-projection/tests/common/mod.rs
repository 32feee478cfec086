//! What the projection tests run against: a private PostgreSQL cluster
//! (the Debian package's binaries, `./scripts/test` installs them) and a
//! Quipu server in this process, both on free loopback ports.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL cluster in a temporary directory, stopped on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
    /// libpq connection string of its `postgres` database.
    pub conninfo: String,
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").exists());
    versions.sort();
    versions.pop().expect("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb); ./scripts/test installs it")
}

impl Postgres {
    /// Creates and starts a cluster (as the `postgres` user when this
    /// process is root, since PostgreSQL refuses to run as root).
    pub fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        // The effective user: `id -u` prints it.
        let uid = Command::new("id").arg("-u").output().expect("run id").stdout;
        let as_postgres = String::from_utf8_lossy(&uid).trim() == "0";
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().expect("chown");
            assert!(status.success(), "chown the cluster directory to postgres");
        }
        let port = free_port();
        let data = dir.path().join("data");
        let mut cluster = Postgres { bin, dir, as_postgres, conninfo: String::new() };
        cluster.run("initdb", &["-D", path(&data), "-A", "trust", "-U", "postgres"]);
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on",
            path(cluster.dir.path())
        );
        let log = cluster.dir.path().join("log");
        cluster.run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-w", "-o", &options, "start"]);
        cluster.conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
        cluster
    }

    /// A command running PostgreSQL's `program`, as the `postgres` user
    /// when this process is root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(output.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// A connection, its driver spawned on the current runtime.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.conninfo, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.command("pg_ctl").args(["-D", path(&data), "-m", "immediate", "stop"]).output();
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// A Quipu server on free ports, served by this process until dropped.
pub struct Quipu {
    /// Its gRPC address, `http://127.0.0.1:port`.
    pub address: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Quipu {
    /// Opens a store in a temporary directory and serves it on its own
    /// runtime thread.
    pub fn start() -> Quipu {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = quipu_core::Store::open(dir.path(), quipu_core::Options::default()).expect("open the store");
        let grpc = TcpListener::bind("127.0.0.1:0").expect("bind gRPC");
        let http = TcpListener::bind("127.0.0.1:0").expect("bind HTTP");
        let address = format!("http://{}", grpc.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                grpc.set_nonblocking(true).expect("nonblocking");
                http.set_nonblocking(true).expect("nonblocking");
                let listeners = quipu_server::Listeners {
                    grpc: tokio::net::TcpListener::from_std(grpc).expect("gRPC listener"),
                    http: tokio::net::TcpListener::from_std(http).expect("HTTP listener"),
                    kurrent: None,
                };
                let shutdown = async {
                    let _ = stopped.await;
                };
                quipu_server::serve(store, listeners, shutdown).await.expect("serve");
            });
        });
        Quipu { address, _dir: dir, stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Quipu {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Per `order-*` stream: the sum of its events' `amount` and how many it
/// has, from the events themselves.
pub async fn fold(client: &quipu_client::Client) -> std::collections::BTreeMap<String, (i64, i64)> {
    let mut totals = std::collections::BTreeMap::new();
    let mut from = quipu_client::Position::START;
    loop {
        let page = client.read_all(Some(from), quipu_client::Direction::Forwards, 1000).await.expect("read $all");
        let Some(last) = page.last() else { return totals };
        from = last.position.next();
        for event in page.iter().filter(|e| e.stream.starts_with("order-")) {
            let data: serde_json::Value = event.json().expect("JSON data");
            let entry = totals.entry(event.stream.clone()).or_insert((0, 0));
            entry.0 += data["amount"].as_i64().expect("amount");
            entry.1 += 1;
        }
    }
}

/// `order_totals.totals` as stream -> (total, events).
pub async fn read_model(postgres: &tokio_postgres::Client) -> std::collections::BTreeMap<String, (i64, i64)> {
    let rows =
        postgres.query("SELECT stream, total, events FROM order_totals.totals", &[]).await.expect("query totals");
    rows.iter().map(|row| (row.get(0), (row.get(1), row.get(2)))).collect()
}
