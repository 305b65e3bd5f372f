//! The worker processes as the coordinator sees them: each started as
//! `rill-load worker` with its plan on stdin, told `more` and `go` there;
//! what they write back (JSON lines on stdout) is kept in one [`State`],
//! which the coordinator waits on with the progress bar.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::plan::{Progress, WorkerMessage, WorkerPlan, WorkerResult};

/// How often the coordinator looks at the workers' state.
const POLL: Duration = Duration::from_millis(200);

/// What the workers have reported, one entry per worker.
#[derive(Debug, Default)]
pub struct State {
    progress: Vec<Progress>,
    connected: Vec<bool>,
    half: Vec<bool>,
    results: Vec<Option<WorkerResult>>,
    exited: Vec<bool>,
}

impl State {
    fn new(workers: usize) -> Self {
        Self {
            progress: vec![Progress::default(); workers],
            connected: vec![false; workers],
            half: vec![false; workers],
            results: vec![None; workers],
            exited: vec![false; workers],
        }
    }

    /// Worker `index` wrote `message`.
    fn apply(&mut self, index: usize, message: WorkerMessage) {
        match message {
            WorkerMessage::Progress(p) => self.progress[index] = p,
            WorkerMessage::Half(p) => {
                self.progress[index] = p;
                self.half[index] = true;
            }
            WorkerMessage::Connected(p) => {
                self.progress[index] = p;
                self.connected[index] = true;
            }
            WorkerMessage::Result(r) => {
                self.progress[index] = r.progress.clone();
                self.results[index] = Some(*r);
            }
        }
    }

    /// Every worker's counts added up.
    pub fn total(&self) -> Progress {
        self.progress.iter().sum()
    }

    /// Every worker has connected (or failed) the first half of its
    /// sessions.
    pub fn all_half(&self) -> bool {
        self.half.iter().all(|h| *h)
    }

    /// Every worker has connected (or failed) all its sessions.
    pub fn all_connected(&self) -> bool {
        self.connected.iter().all(|c| *c)
    }

    fn all_results(&self) -> bool {
        self.results.iter().all(Option::is_some)
    }

    fn any_exited(&self) -> bool {
        self.exited.iter().any(|e| *e)
    }

    /// A worker has exited without writing its result.
    fn lost_a_result(&self) -> bool {
        self.exited
            .iter()
            .zip(&self.results)
            .any(|(e, r)| *e && r.is_none())
    }
}

/// The running workers: their stdin, and the state their stdout fills.
#[derive(Debug)]
pub struct Workers {
    children: Vec<(Child, ChildStdin)>,
    state: Arc<Mutex<State>>,
}

impl Workers {
    /// Starts one worker per plan (this executable, `worker`) and writes
    /// it its plan.
    pub async fn start(plans: &[WorkerPlan]) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State::new(plans.len())));
        let mut children = Vec::new();
        let exe = std::env::current_exe().context("own executable")?;
        for plan in plans {
            let mut child = Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("start a worker")?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let mut line = serde_json::to_string(plan)?;
            line.push('\n');
            stdin.write_all(line.as_bytes()).await?;
            tokio::spawn(read(stdout, state.clone(), plan.index as usize));
            children.push((child, stdin));
        }
        Ok(Self { children, state })
    }

    /// The workers' state, locked.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("state lock")
    }

    /// Writes `line` to every worker's stdin.
    pub async fn tell_all(&mut self, line: &[u8]) -> anyhow::Result<()> {
        for (_, stdin) in &mut self.children {
            stdin.write_all(line).await?;
        }
        Ok(())
    }

    /// Waits, showing `stage`, until `done` holds for the workers' state;
    /// fails when a worker exits or the run's time runs out first.
    pub async fn wait_until(
        &self,
        bar: &ProgressBar,
        stage: &str,
        deadline: Instant,
        done: impl Fn(&State) -> bool,
    ) -> anyhow::Result<()> {
        poll(deadline, "connecting", || {
            let state = self.state();
            show(bar, &state, stage);
            if done(&state) {
                return Ok(true);
            }
            if state.any_exited() {
                anyhow::bail!("a worker exited while connecting (see its error above)");
            }
            Ok(false)
        })
        .await
    }

    /// Waits, showing the sending, until every worker has written its
    /// result, calling `each_turn` first on every look; fails when a
    /// worker exits without one or the run's time runs out first.
    pub async fn wait_for_results(
        &self,
        bar: &ProgressBar,
        deadline: Instant,
        mut each_turn: impl FnMut(),
    ) -> anyhow::Result<()> {
        poll(deadline, "sending", || {
            each_turn();
            let state = self.state();
            show(bar, &state, "sending");
            if state.all_results() {
                return Ok(true);
            }
            if state.lost_a_result() {
                anyhow::bail!("a worker exited without a result (see its error above)");
            }
            Ok(false)
        })
        .await
    }

    /// Closes every worker's stdin, gives each 10 s to exit, and returns
    /// the results they wrote.
    pub async fn finish(self) -> Vec<WorkerResult> {
        for (mut child, stdin) in self.children {
            drop(stdin);
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
        self.state
            .lock()
            .expect("state lock")
            .results
            .iter_mut()
            .filter_map(Option::take)
            .collect()
    }
}

/// Reads worker `index`'s lines into `state` until its stdout closes,
/// then marks it exited. Lines that do not parse are skipped.
async fn read(stdout: ChildStdout, state: Arc<Mutex<State>>, index: usize) {
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(message) = serde_json::from_str::<WorkerMessage>(&line) else {
            continue;
        };
        state.lock().expect("state lock").apply(index, message);
    }
    state.lock().expect("state lock").exited[index] = true;
}

/// Looks every [`POLL`] until `look` says done or fails; fails when the
/// run's time runs out first, `while_` saying in which phase.
async fn poll(
    deadline: Instant,
    while_: &str,
    mut look: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    loop {
        if look()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("the run's time ran out while {while_}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The progress bar over `sessions`, hidden without `--progress`.
pub fn progress_bar(shown: bool, sessions: u64) -> ProgressBar {
    let bar = if shown {
        ProgressBar::new(sessions)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// The progress bar's position and message for `phase`.
fn show(bar: &ProgressBar, state: &State, phase: &str) {
    let total = state.total();
    bar.set_position(total.connected + total.failed);
    bar.set_message(format!(
        "{phase}: connected {} failed {} sent {} acked {} received {}",
        total.connected, total.failed, total.sent, total.acked, total.received
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(connected: u64) -> Progress {
        Progress {
            connected,
            ..Progress::default()
        }
    }

    #[test]
    fn the_state_follows_what_the_workers_write() {
        let mut state = State::new(2);
        state.apply(0, WorkerMessage::Progress(progress(1)));
        state.apply(1, WorkerMessage::Half(progress(2)));
        assert_eq!(state.total().connected, 3);
        assert!(!state.all_half());
        state.apply(0, WorkerMessage::Half(progress(2)));
        assert!(state.all_half() && !state.all_connected());
        state.apply(0, WorkerMessage::Connected(progress(4)));
        state.apply(1, WorkerMessage::Connected(progress(4)));
        assert!(state.all_connected() && !state.all_results());
        let result = WorkerResult {
            index: 1,
            progress: progress(5),
            ..WorkerResult::default()
        };
        state.apply(1, WorkerMessage::Result(Box::new(result)));
        assert_eq!(state.total().connected, 9, "the result's counts");
        assert!(!state.all_results());
    }

    #[test]
    fn a_worker_that_exits_before_its_result_is_lost() {
        let mut state = State::new(2);
        let result = WorkerResult::default;
        state.apply(0, WorkerMessage::Result(Box::new(result())));
        state.exited[0] = true;
        assert!(state.any_exited() && !state.lost_a_result(), "it answered");
        state.exited[1] = true;
        assert!(state.lost_a_result());
        state.apply(1, WorkerMessage::Result(Box::new(result())));
        assert!(state.all_results() && !state.lost_a_result());
    }

    #[tokio::test]
    async fn polling_stops_when_done_failed_or_out_of_time() {
        let later = Instant::now() + Duration::from_secs(60);
        let mut looks = 0;
        let done = poll(later, "testing", || {
            looks += 1;
            Ok(true)
        })
        .await;
        assert!(done.is_ok());
        assert_eq!(looks, 1, "done at the first look: no wait");
        let failed = poll(later, "testing", || anyhow::bail!("gone")).await;
        assert_eq!(failed.expect_err("failed").to_string(), "gone");
        let past = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .expect("a second of uptime");
        let late = poll(past, "testing", || Ok(false)).await;
        assert_eq!(
            late.expect_err("out of time").to_string(),
            "the run's time ran out while testing"
        );
    }
}
