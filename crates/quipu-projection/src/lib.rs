//! # quipu-projection: read models in PostgreSQL, exactly once
//!
//! Implement [`Projection`] (create your tables, apply a batch of events
//! in a transaction) and hand it to a [`Runner`]. The runner follows the
//! projection's events from Quipu (catch-up, then live) and commits each
//! batch in one PostgreSQL transaction together with the projection's
//! checkpoint (table `quipu_projections`), so a crash at any point neither
//! loses nor repeats an effect. The read model lives in the schema named
//! after the projection.
//!
//! A [`Supervisor`] runs a projection the same way and also the rebuilds
//! asked through the server (`quipu projection rebuild NAME`): it reports
//! to the server, builds the new model beside the live one, swaps it in
//! and reports the outcome.
//!
//! `src/bin/order-totals.rs` is a complete example, also used by the
//! crash and rebuild tests.
//!
//! ```no_run
//! # use quipu_projection::{HandlerError, Projection, Runner};
//! # use quipu_client::{Client, Event, Filter};
//! # use tokio_postgres::Transaction;
//! struct Totals;
//!
//! #[async_trait::async_trait]
//! impl Projection for Totals {
//!     fn name(&self) -> &str { "totals" }
//!     fn filter(&self) -> Option<Filter> { Some(Filter::Category("order".into())) }
//!     async fn create(&mut self, tx: &Transaction<'_>, schema: &str) -> Result<(), HandlerError> {
//!         tx.batch_execute(&format!("CREATE TABLE \"{schema}\".totals (stream text PRIMARY KEY, n bigint)")).await?;
//!         Ok(())
//!     }
//!     async fn apply(&mut self, tx: &Transaction<'_>, schema: &str, events: &[Event]) -> Result<(), HandlerError> {
//!         let upsert = format!("INSERT INTO \"{schema}\".totals VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = totals.n + 1");
//!         for event in events {
//!             tx.execute(&upsert, &[&event.stream]).await?;
//!         }
//!         Ok(())
//!     }
//! }
//! # async fn run(quipu: Client, postgres: tokio_postgres::Client) -> Result<(), quipu_projection::Error> {
//! let mut runner = Runner::new(quipu, postgres);
//! runner.run(&mut Totals, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```

pub mod checkpoint;
mod error;
mod projection;
mod runner;
mod supervisor;

pub use error::Error;
pub use projection::{HandlerError, Projection};
pub use runner::{BATCH_MAX_DEFAULT, Progress, Runner, check_name};
pub use supervisor::{REPORT_EVERY, Supervisor};
