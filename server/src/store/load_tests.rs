//! Load tests: written `running` before the first request, their numbers
//! every second, completed with how they ended.

use app::model::{LoadTest, LoadTestResults, LoadTestState};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_ms};
use crate::error::{Error, Result};

const COLUMNS: &str = "id, model, version, address, users, rate, duration_secs, ramp_up_secs, \
                       body, state, started_by, started_ms, finished_ms, results";

impl Store {
    /// Records `test` as running, by this process. `false`: a test of the
    /// same deployment is running already.
    pub async fn begin_load_test(&self, test: &LoadTest, audit_id: &str) -> Result<bool> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO load_tests ({COLUMNS}, replica, audit_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(&test.id)
        .bind(&test.model)
        .bind(test.version.as_deref())
        .bind(&test.address)
        .bind(i64::from(test.users))
        .bind(test.rate.map(i64::from))
        .bind(i64::from(test.duration_secs))
        .bind(i64::from(test.ramp_up_secs))
        .bind(&test.body)
        .bind(LoadTestState::Running.as_str())
        .bind(&test.started_by)
        .bind(test.started_ms)
        .bind(None::<i64>)
        .bind(results_text(&test.results)?)
        .bind(self.instance())
        .bind(audit_id)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// The numbers so far; whether someone asked to cancel it.
    pub async fn record_load_progress(&self, id: &str, results: &LoadTestResults) -> Result<bool> {
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE load_tests SET results = $1 WHERE id = $2 AND state = $3 \
             RETURNING cancel_requested",
        )
        .bind(results_text(results)?)
        .bind(id)
        .bind(LoadTestState::Running.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(cancel.unwrap_or(0) != 0)
    }

    /// Ends a running test with its numbers; `false` if it had ended.
    pub async fn finish_load_test(
        &self,
        id: &str,
        state: LoadTestState,
        results: &LoadTestResults,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE load_tests SET state = $1, results = $2, finished_ms = $3 \
             WHERE id = $4 AND state = $5",
        )
        .bind(state.as_str())
        .bind(results_text(results)?)
        .bind(now_ms())
        .bind(id)
        .bind(LoadTestState::Running.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Asks the process running `id` to stop it; `false` if it is not running.
    pub async fn request_load_test_cancel(&self, id: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE load_tests SET cancel_requested = 1 WHERE id = $1 AND state = $2")
                .bind(id)
                .bind(LoadTestState::Running.as_str())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn load_test(&self, id: &str) -> Result<Option<LoadTest>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM load_tests WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(load_test_from_row).transpose()
    }

    /// A deployment's tests, newest first.
    pub async fn load_tests(&self, model: &str, limit: i64) -> Result<Vec<LoadTest>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM load_tests WHERE model = $1 ORDER BY started_ms DESC LIMIT $2"
        ))
        .bind(model)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(load_test_from_row).collect()
    }

    /// Ends as interrupted the tests running in a process other than this
    /// one that has not been seen since `alive_since` (ms): the tests ended
    /// and their audit entries.
    pub async fn settle_load_tests(&self, alive_since: i64) -> Result<Vec<(LoadTest, String)>> {
        let rows = sqlx::query(
            "SELECT id, audit_id FROM load_tests WHERE state = $1 AND replica <> $2 \
             AND replica NOT IN (SELECT instance FROM replicas WHERE seen_ms >= $3)",
        )
        .bind(LoadTestState::Running.as_str())
        .bind(self.instance())
        .bind(alive_since)
        .fetch_all(&self.pool)
        .await?;
        let mut ended = Vec::new();
        for row in rows {
            let (id, audit_id): (String, String) = (row.try_get("id")?, row.try_get("audit_id")?);
            let Some(test) = self.load_test(&id).await? else {
                continue;
            };
            if self
                .finish_load_test(&id, LoadTestState::Interrupted, &test.results)
                .await?
            {
                ended.push((test, audit_id));
            }
        }
        Ok(ended)
    }
}

fn results_text(results: &LoadTestResults) -> Result<String> {
    serde_json::to_string(results)
        .map_err(|err| Error::Internal(format!("a load test's results: {err}")))
}

fn load_test_from_row(row: &AnyRow) -> Result<LoadTest> {
    let state: String = row.try_get("state")?;
    let results: String = row.try_get("results")?;
    let results = serde_json::from_str(&results)
        .map_err(|err| Error::Internal(format!("a load test's results in the database: {err}")))?;
    let count = |column: &str| -> Result<u32> {
        Ok(u32::try_from(row.try_get::<i64, _>(column)?).unwrap_or_default())
    };
    Ok(LoadTest {
        id: row.try_get("id")?,
        model: row.try_get("model")?,
        version: row.try_get("version")?,
        address: row.try_get("address")?,
        users: count("users")?,
        rate: row
            .try_get::<Option<i64>, _>("rate")?
            .and_then(|rate| u32::try_from(rate).ok()),
        duration_secs: count("duration_secs")?,
        ramp_up_secs: count("ramp_up_secs")?,
        body: row.try_get("body")?,
        state: LoadTestState::parse(&state)
            .ok_or_else(|| Error::Internal(format!("load test state {state:?}")))?,
        started_by: row.try_get("started_by")?,
        started_ms: row.try_get("started_ms")?,
        finished_ms: row.try_get("finished_ms")?,
        results,
    })
}
