//! A local cluster for the example: a broker, its topic, three nodes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use quipu_cluster::LocalBroker;

const TOPIC: &str = "quipu-log";
const NODES: usize = 3;

/// The broker and the nodes this example started; stopped, and their
/// data removed, when dropped.
pub struct Local {
    /// The nodes' gRPC addresses (`http://...`).
    pub addresses: Vec<String>,
    nodes: Vec<Child>,
    broker: LocalBroker,
    dir: PathBuf,
}

impl Local {
    /// Starts the broker, makes the topic, starts the nodes and waits for
    /// each to listen (a node listens once it has caught up).
    pub async fn start() -> anyhow::Result<Local> {
        let dir = std::env::temp_dir().join(format!("quipu-cluster-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let broker = LocalBroker::start(&dir.join("broker"))?;
        let record_bytes_max = 16 << 20;
        quipu_cluster::create_topic(&broker.address, TOPIC, 3, 1, record_bytes_max).await?;
        let mut local = Local { addresses: Vec::new(), nodes: Vec::new(), broker, dir };
        for n in 0..NODES {
            local.start_node(n)?;
        }
        Ok(local)
    }

    fn start_node(&mut self, n: usize) -> anyhow::Result<()> {
        let mut child = Command::new(quipu_binary()?)
            .args(["serve", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--cluster-brokers", &self.broker.address, "--cluster-topic", TOPIC])
            .args(["--cluster-node", &format!("node-{n}"), "--data-dir"])
            .arg(self.dir.join(format!("node-{n}")))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting quipu serve")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("piped stdout")?).read_line(&mut line)?;
        self.nodes.push(child);
        let grpc = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("grpc="))
            .with_context(|| format!("node {n} did not start: {line:?}"))?;
        self.addresses.push(format!("http://{grpc}"));
        Ok(())
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `QUIPU_BIN`, or the `quipu` binary beside this example's.
fn quipu_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("QUIPU_BIN") {
        return Ok(PathBuf::from(path));
    }
    let beside = std::env::current_exe()?.with_file_name("quipu");
    anyhow::ensure!(
        beside.exists(),
        "no quipu binary at {}: run `cargo build -p quipu` first, or set QUIPU_BIN",
        beside.display()
    );
    Ok(beside)
}
