//! [`LocalBroker`]: a Kafka-protocol broker on this machine for tests,
//! benchmarks and trying cluster mode out: noida-db, a single-binary
//! broker from PyPI (`python3 -m pip install noida-db==0.2.3`, which
//! `scripts/test` does), on a free port of loopback. Not for production:
//! it is one broker, so a topic on it has one replica.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// How long the broker may take to listen.
const LISTEN_WITHIN: Duration = Duration::from_secs(30);

/// Why a local broker could not start or make a topic.
#[derive(Debug, thiserror::Error)]
pub enum LocalBrokerError {
    /// noida-db is not installed, or did not start.
    #[error("noida-db: {0} (install it with `python3 -m pip install noida-db==0.2.3`, or set NOIDA_DB)")]
    Start(String),
    /// The broker refused to create a topic.
    #[error("creating topic {topic}: {reason}")]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
    },
}

/// A noida-db broker running on loopback; stopped (killed) when dropped.
#[derive(Debug)]
pub struct LocalBroker {
    child: Child,
    /// `127.0.0.1:port`, for `bootstrap.servers`.
    pub address: String,
    port: u16,
    data_dir: std::path::PathBuf,
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalBroker {
    /// Starts a broker keeping its data in `data_dir`, and waits until it
    /// listens.
    ///
    /// # Errors
    /// [`LocalBrokerError::Start`] when noida-db is not installed, does
    /// not start, or does not listen within 30 s.
    pub fn start(data_dir: &Path) -> Result<LocalBroker, LocalBrokerError> {
        let start = |e: std::io::Error| LocalBrokerError::Start(e.to_string());
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(start)?.port();
        let child = spawn(port, data_dir)?;
        let mut broker =
            LocalBroker { child, address: format!("127.0.0.1:{port}"), port, data_dir: data_dir.to_path_buf() };
        broker.wait_listening()?;
        Ok(broker)
    }

    /// Stops the broker as its operator would (SIGINT: noida-db keeps its
    /// data in memory and saves it as it stops; a SIGKILL loses it all,
    /// unlike a Kafka broker), then starts it again on the same port and
    /// data, and waits until it listens.
    ///
    /// # Errors
    /// As [`LocalBroker::start`]; the broker does not stop within 30 s.
    pub fn restart(&mut self) -> Result<(), LocalBrokerError> {
        let pid = self.child.id().to_string();
        self.signal("-INT")?;
        let deadline = Instant::now() + LISTEN_WITHIN;
        while self.child.try_wait().map_err(|e| LocalBrokerError::Start(e.to_string()))?.is_none() {
            if Instant::now() > deadline {
                return Err(LocalBrokerError::Start(format!("process {pid} did not stop")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = spawn(self.port, &self.data_dir)?;
        self.wait_listening()
    }

    /// Freezes the broker (SIGSTOP): it takes connections and requests but
    /// answers nothing until [`LocalBroker::resume`], as a broker stalled
    /// by a long pause would.
    ///
    /// Returns once the process is stopped (a signal is delivered
    /// asynchronously), so what is sent after the call waits unanswered.
    ///
    /// # Errors
    /// [`LocalBrokerError::Start`] when the process cannot be signalled,
    /// has exited, or is not stopped within 30 s.
    pub fn pause(&self) -> Result<(), LocalBrokerError> {
        self.signal("-STOP")?;
        let deadline = Instant::now() + LISTEN_WITHIN;
        loop {
            match self.state() {
                Some('T') => return Ok(()),
                Some('Z' | 'X') | None => {
                    return Err(LocalBrokerError::Start(format!("process {} has exited", self.child.id())));
                }
                Some(_) if Instant::now() > deadline => {
                    return Err(LocalBrokerError::Start(format!("process {} did not stop", self.child.id())));
                }
                Some(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// The process's state letter from `/proc/PID/stat` (`T` stopped, `Z`
    /// a zombie...), or `None` when it cannot be read.
    fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(") ")?.1.chars().next()
    }

    /// Lets a paused broker go on (SIGCONT): it answers what it was sent.
    ///
    /// # Errors
    /// [`LocalBrokerError::Start`] when the process cannot be signalled.
    pub fn resume(&self) -> Result<(), LocalBrokerError> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), LocalBrokerError> {
        let pid = self.child.id().to_string();
        match Command::new("kill").args([signal, &pid]).status() {
            Ok(status) if status.success() => Ok(()),
            _ => Err(LocalBrokerError::Start(format!("could not send {signal} to process {pid}"))),
        }
    }

    /// Waits until the broker listens; refuses one that exited (its port
    /// taken meanwhile: what listens there is not this broker).
    fn wait_listening(&mut self) -> Result<(), LocalBrokerError> {
        let deadline = Instant::now() + LISTEN_WITHIN;
        loop {
            let listening = std::net::TcpStream::connect(&self.address).is_ok();
            if let Some(status) = self.child.try_wait().map_err(|e| LocalBrokerError::Start(e.to_string()))? {
                return Err(LocalBrokerError::Start(format!(
                    "it exited ({status}) instead of listening on {}",
                    self.address
                )));
            }
            if listening {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LocalBrokerError::Start(format!("it did not listen on {}", self.address)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates `topic` with `partitions` partitions, keeping every record
    /// and taking the largest proposals, with `more` settings on top (a
    /// later setting of the same name wins).
    ///
    /// # Errors
    /// [`LocalBrokerError::Topic`] with the broker's answer.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        more: &[(&str, &str)],
    ) -> Result<(), LocalBrokerError> {
        let refused = |reason: String| LocalBrokerError::Topic { topic: topic.to_owned(), reason };
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &self.address).create().map_err(|e| refused(e.to_string()))?;
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
            .set("retention.ms", "-1")
            .set("max.message.bytes", "16777216");
        for (key, value) in more {
            new = new.set(key, value);
        }
        let results = admin.create_topics([&new], &AdminOptions::new()).await.map_err(|e| refused(e.to_string()))?;
        for result in results {
            result.map_err(|(_, code)| refused(code.to_string()))?;
        }
        Ok(())
    }
}

/// A noida-db process serving Kafka on `port` of loopback from `data_dir`.
fn spawn(port: u16, data_dir: &Path) -> Result<Child, LocalBrokerError> {
    Command::new(binary()?)
        .args(["start", "--only", "kafka", "--kafka-port", &port.to_string(), "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| LocalBrokerError::Start(e.to_string()))
}

/// The noida-db binary: `NOIDA_DB`, or the one inside the Python package.
fn binary() -> Result<PathBuf, LocalBrokerError> {
    if let Some(path) = std::env::var_os("NOIDA_DB") {
        return Ok(PathBuf::from(path));
    }
    let output = Command::new("python3")
        .args(["-c", "import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), 'noida-db'))"])
        .output()
        .map_err(|e| LocalBrokerError::Start(format!("running python3 to find it: {e}")))?;
    if !output.status.success() {
        return Err(LocalBrokerError::Start("it is not installed".into()));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}
