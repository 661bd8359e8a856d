//! Debian's Prometheus, as tests run it.

use std::time::Duration;

use super::eventually;

/// Debian's Prometheus on 127.0.0.1, scraping `target` (host:port) every
/// second. Killed when dropped.
pub struct Prometheus {
    child: tokio::process::Child,
    pub url: String,
    _data: tempfile::TempDir,
}

impl Prometheus {
    pub async fn start(target: &str, port: u16) -> Self {
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: slipway\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(data.path().join("prometheus.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus on PATH (make test installs Debian's package)");
        let url = format!("http://127.0.0.1:{port}");
        let ready = eventually(Duration::from_secs(30), || async {
            let answer = reqwest::get(format!("{url}/-/ready")).await.ok()?;
            answer.status().is_success().then_some(())
        })
        .await;
        assert!(ready.is_some(), "Prometheus did not become ready");
        Self {
            child,
            url,
            _data: data,
        }
    }

    /// Waits until Prometheus has scraped its target at least once more.
    pub async fn scraped_again(&self) {
        let query = format!("{}/api/v1/query?query=up", self.url);
        let first = scrape_time(&query).await;
        eventually(Duration::from_secs(10), || async {
            (scrape_time(&query).await > first).then_some(())
        })
        .await
        .expect("Prometheus scrapes every second");
    }
}

async fn scrape_time(query: &str) -> f64 {
    let answer: serde_json::Value = reqwest::get(query).await.unwrap().json().await.unwrap();
    answer["data"]["result"][0]["value"][0]
        .as_f64()
        .unwrap_or(0.0)
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
