//! Shared harness for the end-to-end tests: runs the real `sluice` binary on loopback and drives
//! it through the real `aws-sdk-kinesis` client.
//!
//! Every [`Server`] gets its own data directory (a fresh temporary one unless a test restarts on
//! an existing one) and its own free port, so tests never share state and can run in parallel.
//! The server runs with `--cores 1 --pin-cores false` by default: the test machine has two cores
//! shared by every concurrently running test, and pinned executors would starve each other.
//! All lifecycle delays are zero by default so that tests do not sleep; a test that wants to see
//! `CREATING` asks for a delay explicitly.
//!
//! The harness kills its child process on drop, so a panicking test never leaks a server.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::StreamStatus;
use md5::{Digest, Md5};

/// How long the server may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stream may take to leave `CREATING` (or disappear after delete) with zero delays.
pub const STATE_CHANGE_TIMEOUT: Duration = Duration::from_secs(20);
pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "000000000000";
/// The ready line starts with this; the address follows up to the next space.
const READY_PREFIX: &str = "sluice: serving Kinesis on ";
/// How much of the server's stderr the harness keeps for failure messages.
const STDERR_KEPT_BYTES_MAX: usize = 64 * 1024;

/// Options for starting a server. Flags given here replace the harness defaults of the same name.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    flags: BTreeMap<String, String>,
    data_dir: Option<PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        let mut flags = BTreeMap::new();
        for (flag, value) in [
            ("--http-addr", "127.0.0.1:0"),
            ("--cores", "1"),
            ("--pin-cores", "false"),
            ("--create-delay-ms", "0"),
            ("--delete-delay-ms", "0"),
            ("--update-delay-ms", "0"),
        ] {
            flags.insert(flag.to_owned(), value.to_owned());
        }
        Self {
            flags,
            data_dir: None,
        }
    }
}

impl ServerOptions {
    /// Sets (or replaces) one `--flag value` pair.
    pub fn flag(mut self, flag: &str, value: impl ToString) -> Self {
        assert!(
            flag.starts_with("--"),
            "flags are spelled with two dashes: {flag}"
        );
        self.flags.insert(flag.to_owned(), value.to_string());
        self
    }

    /// Runs on an existing data directory instead of a fresh temporary one.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    pub fn start(self) -> Server {
        Server::start_with(self)
    }
}

/// Where temporary data directories go: `SLUICE_TEST_DIR` if set (to run the suite on a real
/// disk rather than the system temp dir), else the system temp dir.
fn temp_base_dir() -> PathBuf {
    std::env::var_os("SLUICE_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A running `sluice serve` child process.
pub struct Server {
    child: Option<Child>,
    options: ServerOptions,
    data_dir: PathBuf,
    /// Owns the temporary data directory (if the harness made it) so it lives as long as the
    /// server and survives restarts.
    _temp_dir: Option<Arc<tempfile::TempDir>>,
    endpoint: String,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    /// Starts a server with the harness defaults on a fresh data directory.
    pub fn start() -> Server {
        ServerOptions::default().start()
    }

    pub fn options() -> ServerOptions {
        ServerOptions::default()
    }

    fn start_with(options: ServerOptions) -> Server {
        let (data_dir, temp_dir) = match &options.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("sluice-test-")
                    .tempdir_in(temp_base_dir())
                    .expect("the temp dir is writable");
                (temp.path().join("data"), Some(Arc::new(temp)))
            }
        };
        let mut server = Server {
            child: None,
            options,
            data_dir,
            _temp_dir: temp_dir,
            endpoint: String::new(),
            stderr: Arc::new(Mutex::new(Vec::new())),
        };
        server.spawn();
        server
    }

    /// The command line the harness runs, for messages.
    fn command_line(&self) -> Vec<String> {
        let mut args = vec!["serve".to_owned(), "--data-dir".to_owned()];
        args.push(self.data_dir.display().to_string());
        for (flag, value) in &self.options.flags {
            args.push(flag.clone());
            args.push(value.clone());
        }
        args
    }

    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "spawn is only called when no child runs"
        );
        let args = self.command_line();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the sluice binary built by cargo can be spawned");

        let stderr_pipe = child.stderr.take().expect("stderr was piped");
        let stderr_buf = Arc::new(Mutex::new(Vec::new()));
        self.stderr = Arc::clone(&stderr_buf);
        std::thread::spawn(move || drain_stderr(stderr_pipe, stderr_buf));

        let stdout_pipe = child.stdout.take().expect("stdout was piped");
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Keep draining stdout after the ready line so the server never blocks on a full pipe.
            let mut sent = false;
            for line in BufReader::new(stdout_pipe).lines() {
                let Ok(line) = line else { break };
                if !sent && line.starts_with(READY_PREFIX) {
                    sent = true;
                    let _ = ready_tx.send(line);
                }
            }
        });

        self.child = Some(child);
        let started = Instant::now();
        let line = loop {
            match ready_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.wait_for_exit(Duration::from_secs(5));
                    panic!(
                        "sluice exited ({status:?}) before printing its ready line.\ncommand: sluice {}\nstderr:\n{}",
                        args.join(" "),
                        self.stderr_text()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if started.elapsed() > READY_TIMEOUT {
                        self.kill9();
                        panic!(
                            "sluice printed no ready line within {READY_TIMEOUT:?}.\ncommand: sluice {}\nstderr:\n{}",
                            args.join(" "),
                            self.stderr_text()
                        );
                    }
                }
            }
        };
        self.endpoint = parse_ready_line(&line)
            .unwrap_or_else(|| panic!("ready line does not name an http:// address: {line:?}"));
    }

    fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:<port>` of the running server.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the server wrote to stderr so far (its last 64 KiB).
    pub fn stderr_text(&self) -> String {
        let buf = self
            .stderr
            .lock()
            .expect("stderr buffer lock is never poisoned");
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// An SDK client for this server. Retries are off, so every server error reaches the test
    /// and a crash test never resends a request on its own; every call has a deadline, so a hung
    /// server fails the test instead of hanging it.
    pub fn client(&self) -> Client {
        client_for(&self.endpoint)
    }

    /// Sends SIGKILL and waits for the process to be gone. The data directory is kept.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: no destructor, flush or shutdown hook of the server runs.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server (if it runs) and starts it again on the same data directory with the
    /// same flags. The port changes.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Restarts with different flags on the same data directory.
    pub fn restart_with(&mut self, change: impl FnOnce(ServerOptions) -> ServerOptions) {
        self.kill9();
        let options = std::mem::take(&mut self.options);
        self.options = change(options);
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn drain_stderr(mut pipe: impl Read, buf: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut kept = buf.lock().expect("stderr buffer lock is never poisoned");
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > STDERR_KEPT_BYTES_MAX {
                    let excess = kept.len() - STDERR_KEPT_BYTES_MAX;
                    kept.drain(..excess);
                }
            }
        }
    }
}

/// `sluice: serving Kinesis on http://127.0.0.1:41234 (...)` → `http://127.0.0.1:41234` (`https://` with TLS).
pub fn parse_ready_line(line: &str) -> Option<String> {
    let rest = line.strip_prefix(READY_PREFIX)?;
    let url = rest.split_whitespace().next()?;
    let url = url.trim_end_matches([',', ')', ';']);
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return None;
    }
    Some(url.to_owned())
}

pub fn client_for(endpoint: &str) -> Client {
    let credentials = Credentials::new(
        "AKIDSLUICETEST",
        "sluice-test-secret",
        None,
        None,
        "sluice-tests",
    );
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .build();
    Client::from_conf(config)
}

pub fn stream_arn(stream_name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{stream_name}")
}

/// The exact AWS message for a missing stream.
pub fn stream_not_found_message(stream_name: &str) -> String {
    format!("Stream {stream_name} under account {ACCOUNT_ID} not found.")
}

/// The error code (`__type` without `Exception` stripping: the SDK reports e.g.
/// `ResourceNotFoundException`) and message of a failed call. Panics if the call succeeded.
pub fn expect_error<T: std::fmt::Debug, E, R>(result: Result<T, SdkError<E, R>>) -> (String, String)
where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match result {
        Ok(value) => panic!("the call was expected to fail but returned {value:?}"),
        Err(error) => {
            let code = error.code().map(str::to_owned);
            let message = error.message().map(str::to_owned);
            match code {
                Some(code) => (code, message.unwrap_or_default()),
                None => panic!("the call failed without an AWS error code: {error:?}"),
            }
        }
    }
}

/// Creates a stream and waits until it is ACTIVE.
pub async fn create_active_stream(client: &Client, stream_name: &str, shard_count: i32) {
    client
        .create_stream()
        .stream_name(stream_name)
        .shard_count(shard_count)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStream {stream_name} failed: {e:?}"));
    wait_for_status(client, stream_name, StreamStatus::Active).await;
}

/// Polls DescribeStreamSummary until the stream has `status`.
pub async fn wait_for_status(client: &Client, stream_name: &str, status: StreamStatus) {
    let started = Instant::now();
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream_name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeStreamSummary {stream_name} failed: {e:?}"));
        let current = summary
            .stream_description_summary()
            .expect("DescribeStreamSummary always carries a summary")
            .stream_status()
            .clone();
        if current == status {
            return;
        }
        assert!(
            started.elapsed() < STATE_CHANGE_TIMEOUT,
            "stream {stream_name} is still {current:?} after {STATE_CHANGE_TIMEOUT:?}, waiting for {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until DescribeStreamSummary answers ResourceNotFoundException.
pub async fn wait_until_gone(client: &Client, stream_name: &str) {
    let started = Instant::now();
    loop {
        match client
            .describe_stream_summary()
            .stream_name(stream_name)
            .send()
            .await
        {
            Ok(summary) => {
                let status = summary
                    .stream_description_summary()
                    .map(|s| s.stream_status().clone());
                assert!(
                    started.elapsed() < STATE_CHANGE_TIMEOUT,
                    "stream {stream_name} still exists ({status:?}) {STATE_CHANGE_TIMEOUT:?} after DeleteStream"
                );
            }
            Err(error) => {
                assert_eq!(
                    error.code(),
                    Some("ResourceNotFoundException"),
                    "a deleted stream must be ResourceNotFound, got {error:?}"
                );
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The hash key Kinesis computes for a partition key: MD5 of its UTF-8 bytes, big-endian.
pub fn hash_key_of(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// The hash key ranges CreateStream gives `shard_count` shards, as AWS computes them:
/// width w = ⌊2^128 / n⌋, shard i covers [i·w, (i+1)·w − 1], the last shard ends at 2^128 − 1.
pub fn even_hash_ranges(shard_count: u32) -> Vec<(u128, u128)> {
    assert!(shard_count >= 1, "a stream has at least one shard");
    if shard_count == 1 {
        return vec![(0, u128::MAX)];
    }
    let n = u128::from(shard_count);
    // ⌊2^128 / n⌋ computed without overflowing: 2^128 = u128::MAX + 1.
    let width = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    (0..n)
        .map(|i| {
            let start = i * width;
            let end = if i == n - 1 {
                u128::MAX
            } else {
                (i + 1) * width - 1
            };
            (start, end)
        })
        .collect()
}

/// `shardId-` + 12-digit index.
pub fn shard_id(index: usize) -> String {
    format!("shardId-{index:012}")
}

/// The index of the shard whose even-split range holds `hash_key`.
pub fn shard_index_for(hash_key: u128, shard_count: u32) -> usize {
    even_hash_ranges(shard_count)
        .iter()
        .position(|(start, end)| *start <= hash_key && hash_key <= *end)
        .expect("the even ranges cover the whole hash key space")
}

/// A record as read back, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub approximate_arrival_timestamp: Option<aws_sdk_kinesis::primitives::DateTime>,
}

/// Reads a shard from TRIM_HORIZON to its current end.
pub async fn read_shard_to_end(
    client: &Client,
    stream_name: &str,
    shard_id: &str,
) -> Vec<ReadRecord> {
    let iterator = client
        .get_shard_iterator()
        .stream_name(stream_name)
        .shard_id(shard_id)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetShardIterator TRIM_HORIZON on {shard_id} failed: {e:?}"))
        .shard_iterator
        .expect("GetShardIterator returns an iterator for an open shard");
    read_from_iterator_to_end(client, iterator).await
}

/// Follows NextShardIterator until a response is empty and says it is caught up (or, if the
/// server never reports MillisBehindLatest, until three responses in a row are empty).
pub async fn read_from_iterator_to_end(client: &Client, mut iterator: String) -> Vec<ReadRecord> {
    let mut records = Vec::new();
    let mut empty_in_a_row = 0;
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reading a shard to its end took over two minutes"
        );
        let output = client
            .get_records()
            .shard_iterator(&iterator)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetRecords failed: {e:?}"));
        let page = output.records();
        for record in page {
            records.push(ReadRecord {
                sequence_number: record.sequence_number().to_owned(),
                partition_key: record.partition_key().unwrap_or_default().to_owned(),
                data: record.data().as_ref().to_vec(),
                approximate_arrival_timestamp: record.approximate_arrival_timestamp().copied(),
            });
        }
        if page.is_empty() {
            empty_in_a_row += 1;
            if output.millis_behind_latest() == Some(0) || empty_in_a_row >= 3 {
                return records;
            }
        } else {
            empty_in_a_row = 0;
        }
        iterator = output
            .next_shard_iterator()
            .expect("an open shard always has a NextShardIterator")
            .to_owned();
    }
}

/// Parses a sequence number (a decimal string of a u128... or wider) for ordering checks.
/// AWS numbers are 56 digits, so compare as (length, string), which orders decimal strings
/// without leading zeros numerically.
pub fn sequence_number_key(sequence_number: &str) -> (usize, &str) {
    (sequence_number.len(), sequence_number)
}

/// A stream name unique within this test process.
pub fn unique_stream_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
