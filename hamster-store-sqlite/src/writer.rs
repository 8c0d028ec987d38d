//! The process's single writer, with group commit.
//!
//! Every write of a process goes through one connection, owned by a task. sqlx runs a SQLite
//! connection on its own thread and every command sent to it is a round trip between
//! threads, which costs far more than SQLite's own work. So the task takes all the writes
//! that queued up while it was busy and sends them as *one* command: a single SQL text
//! `BEGIN IMMEDIATE; <every statement of every write>; COMMIT`, with all their parameters.
//! Each caller still gets the results of its own statements. If anything in the group
//! fails, the group is rolled back and its writes are executed again one by one, each
//! atomically, so that an error fails only the write that caused it.
//!
//! Writes queued together are concurrent (none of their callers has had an answer yet),
//! so committing them together, in queue order, is a valid order. A write whose caller
//! gave up waiting is still executed: like any write whose answer was lost, it may or may
//! not have happened as far as the caller knows.
//!
//! A text made of several statements with parameters is a feature of sqlx's SQLite driver
//! (its migrations rely on it): the parameters, all anonymous (`?`), are bound in order
//! across the statements, and every statement ends with one `QueryResult` in the results.

use futures::TryStreamExt;
use futures::future::BoxFuture;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Arguments, Connection, Either, Executor};
use tokio::sync::{mpsc, oneshot};

/// Most writes committed together: bounds the latency a write adds to its group.
const MAX_GROUP_WRITES: usize = 64;
/// Most parameters in one group, below SQLite's default limit of 32,766 per statement
/// text (sqlx binds a multi-statement text's parameters per statement, but a smaller
/// group also bounds the text prepared at once).
const MAX_GROUP_PARAMETERS: usize = 16_000;

/// A value bound to a statement's parameter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Integer(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Integer(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Integer(i64::from(value))
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Self::Text(value.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Self {
        Self::Blob(value)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

/// One atomic write: statements executed in order in one transaction (a single statement
/// is atomic by itself). Parameters are anonymous (`?`) and bound in order across the
/// statements.
#[derive(Debug, Default)]
pub(crate) struct Write {
    statements: Vec<String>,
    values: Vec<Value>,
}

impl Write {
    /// A write that starts with the statement `sql` (one statement, no trailing `;`).
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self::default().then(sql)
    }

    /// Adds the statement `sql` after the previous ones.
    pub(crate) fn then(mut self, sql: impl Into<String>) -> Self {
        self.statements.push(sql.into());
        self
    }

    /// Binds the next parameter.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.values.push(value.into());
        self
    }

    fn add_values_to<'q>(&'q self, arguments: &mut SqliteArguments<'q>) -> Result<(), sqlx::Error> {
        for value in &self.values {
            // Borrowed: sqlx copies them once, to send them to the connection's thread.
            let added = match value {
                Value::Null => arguments.add(None::<i64>),
                Value::Integer(integer) => arguments.add(*integer),
                Value::Text(text) => arguments.add(text.as_str()),
                Value::Blob(blob) => arguments.add(blob.as_slice()),
            };
            added.map_err(sqlx::Error::Encode)?;
        }
        Ok(())
    }
}

/// What one statement of a [`Write`] returned.
pub(crate) struct Executed {
    /// The rows it returned (`RETURNING`, `SELECT`).
    pub(crate) rows: Vec<SqliteRow>,
    /// The rows it inserted, updated or deleted; only meaningful for those statements.
    pub(crate) changes: u64,
}

impl std::fmt::Debug for Executed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executed")
            .field("rows", &self.rows.len())
            .field("changes", &self.changes)
            .finish()
    }
}

/// Work that needs the connection to itself, e.g. a transaction whose statements depend on
/// what earlier ones returned.
type Exclusive = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, ()> + Send>;

enum Command {
    Write {
        write: Write,
        reply: oneshot::Sender<Result<Vec<Executed>, sqlx::Error>>,
    },
    Exclusive(Exclusive),
    Close(oneshot::Sender<()>),
}

/// The handle to the writer task; cheap to share. When the last handle is dropped the task
/// finishes the writes queued so far and closes the connection.
#[derive(Debug)]
pub(crate) struct Writer {
    commands: mpsc::UnboundedSender<Command>,
}

impl Writer {
    /// Starts the writer task, which owns `connection` from now on.
    pub(crate) fn start(connection: SqliteConnection) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(connection, receiver));
        Self { commands }
    }

    /// Executes `write` atomically, possibly committed together with other writes; returns
    /// what each of its statements returned.
    pub(crate) async fn write(&self, write: Write) -> Result<Vec<Executed>, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Write { write, reply })?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    /// Runs `work` with the connection to itself and returns what it returned. `work` runs
    /// to its end even if the caller stops waiting; it manages its own transaction.
    pub(crate) async fn exclusive<T, F>(&self, work: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work: Exclusive = Box::new(move |connection| {
            Box::pin(async move {
                // The caller may have stopped waiting; the work is done either way.
                let _ = reply.send(work(connection).await);
            })
        });
        self.send(Command::Exclusive(work))?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)
    }

    /// Finishes the writes queued before this call, then closes the connection; later
    /// writes fail.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.send(Command::Close(done)).is_ok() {
            // An error means the task is gone already, which is what was asked.
            let _ = closed.await;
        }
    }

    fn send(&self, command: Command) -> Result<(), sqlx::Error> {
        self.commands
            .send(command)
            .map_err(|_| sqlx::Error::PoolClosed)
    }
}

/// A write waiting in a group, with where its answer goes.
struct Queued {
    write: Write,
    reply: oneshot::Sender<Result<Vec<Executed>, sqlx::Error>>,
}

/// The writer task: executes commands in the order they were sent, grouping the writes
/// that are waiting.
async fn run(mut connection: SqliteConnection, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut next: Option<Command> = None;
    let closed = loop {
        let command = match next.take() {
            Some(command) => command,
            None => match commands.recv().await {
                Some(command) => command,
                None => break None,
            },
        };
        match command {
            Command::Write { write, reply } => {
                // Lets the callers that the previous group's answers woke queue their next
                // writes first, so that they join this group instead of waiting for the
                // next: groups measured about twice as big, and throughput ~20 % higher.
                tokio::task::yield_now().await;
                let mut parameters = write.values.len();
                let mut group = vec![Queued { write, reply }];
                while group.len() < MAX_GROUP_WRITES {
                    match commands.try_recv() {
                        Ok(Command::Write { write, reply })
                            if parameters + write.values.len() <= MAX_GROUP_PARAMETERS =>
                        {
                            parameters += write.values.len();
                            group.push(Queued { write, reply });
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                execute_group(&mut connection, group).await;
            }
            Command::Exclusive(work) => work(&mut connection).await,
            Command::Close(done) => break Some(done),
        }
    };
    // Commands sent after `close` are dropped here, so their callers learn it is closed.
    commands.close();
    drop(next);
    if let Err(error) = connection.close().await {
        tracing::warn!(%error, "closing the SQLite writer connection failed");
    }
    if let Some(done) = closed {
        let _ = done.send(());
    }
}

/// Executes a group of writes in one transaction, or, if that fails, one by one.
async fn execute_group(connection: &mut SqliteConnection, mut group: Vec<Queued>) {
    if group.len() == 1 {
        if let Some(Queued { write, reply }) = group.pop() {
            let _ = reply.send(execute(connection, &[&write]).await.map(flatten));
        }
        return;
    }
    // The group's text is prepared once and cached by sqlx under the whole text; sorting
    // makes groups of the same writes the same text, whatever order they arrived in, which
    // measured ~25 % more throughput. The sort is stable: writes with the same statements
    // (appends to one log, say) keep their order.
    group.sort_by(|a, b| a.write.statements.cmp(&b.write.statements));
    let writes: Vec<&Write> = group.iter().map(|queued| &queued.write).collect();
    match execute(connection, &writes).await {
        Ok(results) => {
            for (queued, executed) in group.into_iter().zip(results) {
                let _ = queued.reply.send(Ok(executed));
            }
        }
        Err(error) => {
            tracing::debug!(
                %error,
                writes = group.len(),
                "a group of SQLite writes failed; executing them one by one"
            );
            for Queued { write, reply } in group {
                let _ = reply.send(execute(connection, &[&write]).await.map(flatten));
            }
        }
    }
}

fn flatten(mut results: Vec<Vec<Executed>>) -> Vec<Executed> {
    results.pop().unwrap_or_default()
}

/// The most writes one command text holds. Texts are prepared once and cached by sqlx under
/// the whole text, so a group is sent as texts of identical writes in power-of-two counts up
/// to this: few distinct texts, each prepared once. (One text per group, of whatever writes
/// and counts it held, was a new text almost every time: preparing took a tenth of
/// `hamster serve`'s CPU under intake load.)
const MAX_TEXT_WRITES: usize = 16;

/// Executes `writes` in one transaction, unless there is a single statement, which is
/// atomic by itself. Returns each write's statements' results; on any error nothing of it
/// is left.
async fn execute(
    connection: &mut SqliteConnection,
    writes: &[&Write],
) -> Result<Vec<Vec<Executed>>, sqlx::Error> {
    let texts = texts(writes);
    let statements: usize = writes.iter().map(|write| write.statements.len()).sum();
    let executed = if texts.len() == 1 {
        // One text: `BEGIN` and `COMMIT` travel with it, in one round trip.
        let transaction = statements > 1;
        execute_text(connection, writes, transaction, transaction).await?
    } else {
        // `BEGIN` travels with the first text and `COMMIT` with the last, so that the write
        // lock is held for no more round trips than there are texts (other processes on
        // the file wait for it).
        let last = texts.len() - 1;
        let mut executed = Vec::with_capacity(statements);
        for (index, text) in texts.into_iter().enumerate() {
            match execute_text(connection, text, index == 0, index == last).await {
                Ok(results) => executed.extend(results),
                Err(error) => {
                    if index > 0 {
                        roll_back(connection).await;
                    }
                    return Err(error);
                }
            }
        }
        executed
    };
    if executed.len() != statements {
        return Err(sqlx::Error::Protocol(format!(
            "SQLite returned {} statement results for {statements} statements",
            executed.len()
        )));
    }
    let mut executed = executed.into_iter();
    Ok(writes
        .iter()
        .map(|write| executed.by_ref().take(write.statements.len()).collect())
        .collect())
}

/// Splits `writes` (sorted, so that identical writes are adjacent) into runs of identical
/// writes, each cut into power-of-two counts of at most [`MAX_TEXT_WRITES`].
fn texts<'w, 'a>(writes: &'w [&'a Write]) -> Vec<&'w [&'a Write]> {
    let mut texts = Vec::new();
    let mut rest = writes;
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|write| write.statements == first.statements)
            .count();
        let take = if same >= MAX_TEXT_WRITES {
            MAX_TEXT_WRITES
        } else {
            // The largest power of two not above `same`.
            1 << same.ilog2()
        };
        let (text, remaining) = rest.split_at(take);
        texts.push(text);
        rest = remaining;
    }
    texts
}

/// Executes `writes` as one command text, preceded by `BEGIN IMMEDIATE` if `begin` and
/// followed by `COMMIT` if `commit`; one result per statement of the writes. When the text
/// fails, the transaction it began is rolled back.
async fn execute_text(
    connection: &mut SqliteConnection,
    writes: &[&Write],
    begin: bool,
    commit: bool,
) -> Result<Vec<Executed>, sqlx::Error> {
    let mut sql = String::new();
    if begin {
        sql.push_str("BEGIN IMMEDIATE;\n");
    }
    let mut arguments = SqliteArguments::default();
    for write in writes {
        for statement in &write.statements {
            sql.push_str(statement);
            sql.push_str(";\n");
        }
        write.add_values_to(&mut arguments)?;
    }
    if commit {
        sql.push_str("COMMIT");
    }
    let mut executed = match run_statements(connection, &sql, arguments).await {
        Ok(executed) => executed,
        Err(error) => {
            if begin {
                roll_back(connection).await;
            }
            return Err(error);
        }
    };
    // The `BEGIN` and `COMMIT` results.
    if commit {
        executed.pop();
    }
    if begin && !executed.is_empty() {
        executed.remove(0);
    }
    Ok(executed)
}

/// Runs a text of statements; returns one result per statement.
async fn run_statements(
    connection: &mut SqliteConnection,
    sql: &str,
    arguments: SqliteArguments<'_>,
) -> Result<Vec<Executed>, sqlx::Error> {
    let mut executed = Vec::new();
    let mut rows = Vec::new();
    let mut results = connection.fetch_many(sqlx::query_with(sql, arguments));
    while let Some(result) = results.try_next().await? {
        match result {
            Either::Right(row) => rows.push(row),
            Either::Left(done) => executed.push(Executed {
                rows: std::mem::take(&mut rows),
                changes: done.rows_affected(),
            }),
        }
    }
    Ok(executed)
}

/// Rolls back the transaction a failed group left open, if SQLite has not already.
async fn roll_back(connection: &mut SqliteConnection) {
    if let Err(error) = connection.execute("ROLLBACK").await {
        // "no transaction is active": SQLite rolled back on its own (or `BEGIN` failed).
        tracing::debug!(%error, "rolling back a failed SQLite write");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{ConnectOptions, Row};

    async fn writer() -> Writer {
        let connection = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(":memory:")
            .connect()
            .await
            .unwrap();
        let writer = Writer::start(connection);
        writer
            .write(Write::new(
                "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
            ))
            .await
            .unwrap();
        writer
    }

    #[test]
    fn groups_are_cut_into_texts_of_identical_writes_in_powers_of_two() {
        let a = Write::new("INSERT INTO a VALUES (1)");
        let b = Write::new("INSERT INTO b VALUES (1)");
        let c = Write::new("INSERT INTO c VALUES (1)");
        let mut writes: Vec<&Write> = vec![&a; 37];
        writes.extend(vec![&b; 5]);
        writes.push(&c);
        let sizes: Vec<usize> = texts(&writes).iter().map(|text| text.len()).collect();
        assert_eq!(sizes, [16, 16, 4, 1, 4, 1, 1]);
        assert!(texts(&writes).iter().all(|text| {
            text.iter()
                .all(|write| write.statements == text[0].statements)
        }));
        assert!(texts(&[]).is_empty());
    }

    fn insert(id: i64, name: &str) -> Write {
        Write::new("INSERT INTO items (id, name) VALUES (?, ?) RETURNING id")
            .bind(id)
            .bind(name)
    }

    async fn names(writer: &Writer) -> Vec<String> {
        let executed = writer
            .write(Write::new("SELECT name FROM items ORDER BY id"))
            .await
            .unwrap();
        executed[0]
            .rows
            .iter()
            .map(|row| row.get::<String, _>("name"))
            .collect()
    }

    #[tokio::test]
    async fn statements_of_a_write_get_their_own_parameters_and_results() {
        let writer = writer().await;
        let executed = writer
            .write(
                insert(1, "a")
                    .then("UPDATE items SET name = ? WHERE id = ?")
                    .bind("b")
                    .bind(1_i64)
                    .then("SELECT name FROM items WHERE id = ?")
                    .bind(1_i64),
            )
            .await
            .unwrap();
        assert_eq!(executed.len(), 3);
        assert_eq!(executed[0].rows[0].get::<i64, _>("id"), 1);
        assert_eq!(executed[1].changes, 1);
        assert_eq!(executed[2].rows[0].get::<String, _>("name"), "b");
    }

    #[tokio::test]
    async fn a_failing_statement_undoes_its_whole_write() {
        let writer = writer().await;
        writer.write(insert(1, "a")).await.unwrap();
        let failed = writer
            .write(insert(2, "b").then("INSERT INTO items (id, name) VALUES (3, 'a')"))
            .await;
        assert!(failed.is_err());
        assert_eq!(names(&writer).await, ["a"]);
    }

    /// Runs `writes` as one group, as the writer task would, and returns their results.
    async fn in_one_group(
        writer: &Writer,
        writes: Vec<Write>,
    ) -> Vec<Result<Vec<Executed>, sqlx::Error>> {
        writer
            .exclusive(move |connection| {
                Box::pin(async move {
                    let mut answers = Vec::new();
                    let group = writes
                        .into_iter()
                        .map(|write| {
                            let (reply, answer) = oneshot::channel();
                            answers.push(answer);
                            Queued { write, reply }
                        })
                        .collect();
                    execute_group(connection, group).await;
                    let mut results = Vec::new();
                    for answer in answers {
                        results.push(answer.await.unwrap());
                    }
                    results
                })
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_failing_write_in_a_group_fails_alone() {
        let writer = writer().await;
        let results = in_one_group(
            &writer,
            vec![
                insert(1, "a"),
                insert(2, "b").then("UPDATE items SET name = 'c' WHERE id = 2"),
                // The name is taken by the first write.
                insert(3, "a"),
                insert(4, "d"),
            ],
        )
        .await;
        let failed: Vec<bool> = results.iter().map(Result::is_err).collect();
        assert_eq!(failed, [false, false, true, false]);
        assert_eq!(
            results[3].as_ref().unwrap()[0].rows[0].get::<i64, _>("id"),
            4
        );
        assert_eq!(names(&writer).await, ["a", "c", "d"]);
    }

    #[tokio::test]
    async fn writes_with_the_same_statements_keep_their_order_in_a_group() {
        let writer = writer().await;
        // Each takes the next id, so the ids show the order they ran in.
        let append = |name: &str| {
            Write::new(
                "INSERT INTO items (id, name) \
                 VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM items), ?) RETURNING id",
            )
            .bind(name)
        };
        let results = in_one_group(
            &writer,
            vec![
                append("first"),
                insert(100, "other"),
                append("second"),
                append("third"),
            ],
        )
        .await;
        let ids: Vec<i64> = [0, 2, 3]
            .into_iter()
            .map(|index| results[index].as_ref().unwrap()[0].rows[0].get("id"))
            .collect();
        assert_eq!(ids[1], ids[0] + 1);
        assert_eq!(ids[2], ids[1] + 1);
    }

    #[tokio::test]
    async fn concurrent_writes_each_get_their_own_result() {
        let writer = std::sync::Arc::new(writer().await);
        let writes: Vec<_> = (0..20_i64)
            .map(|id| {
                let writer = writer.clone();
                // Write 7 reuses a name: only it may fail.
                let name = if id == 7 {
                    "item 3".to_owned()
                } else {
                    format!("item {id}")
                };
                tokio::spawn(async move { writer.write(insert(id, &name)).await })
            })
            .collect();
        let mut failures = Vec::new();
        for (id, write) in writes.into_iter().enumerate() {
            match write.await.unwrap() {
                Ok(executed) => assert_eq!(executed[0].rows[0].get::<i64, _>("id"), id as i64),
                Err(_) => failures.push(id),
            }
        }
        assert_eq!(failures, [7]);
        assert_eq!(names(&writer).await.len(), 19);
    }

    #[tokio::test]
    async fn writes_after_close_fail() {
        let writer = writer().await;
        writer.close().await;
        assert!(matches!(
            writer.write(insert(1, "a")).await,
            Err(sqlx::Error::PoolClosed)
        ));
    }
}
