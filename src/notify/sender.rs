//! The sender in `billing serve`: claims queued emails under a lease, sends each over SMTP
//! (or, with no `SMTP_URL`, logs its kind and Message-ID) and marks it sent.
//!
//! SMTP gives at-least-once delivery at best: a crash after the server accepted a message and
//! before it is marked sent sends it again once the lease expires. The stored Message-ID goes
//! out with every attempt, so such a duplicate is recognisably the same message.

use std::time::Duration as StdDuration;

use anyhow::Context;
use chrono::{Duration, Utc};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::templates::check_subject;
use crate::config::Config;
use crate::db::notifications::{self, Pending};

const POLL: StdDuration = StdDuration::from_secs(1);
const BATCH: i64 = 20;
const LEASE: Duration = Duration::seconds(60);

pub struct Sender {
    /// None: no SMTP_URL, emails go to the log.
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

impl Sender {
    /// Checks SMTP_URL and SMTP_FROM at start-up, so a typo fails `serve` instead of every email.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let from = config
            .smtp_from
            .parse::<Mailbox>()
            .context("SMTP_FROM is not an email address")?;
        let smtp = config
            .smtp_url
            .as_deref()
            .map(|url| {
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map(|b| b.build())
                    // Not the URL itself: it may carry a password.
                    .context("SMTP_URL is not a valid smtp:// or smtps:// URL")
            })
            .transpose()?;
        if smtp.is_none() {
            tracing::warn!("SMTP_URL is not set: customer emails are written to the log, not sent");
        }
        Ok(Sender { smtp, from })
    }

    async fn deliver(&self, row: &Pending) -> Result<(), String> {
        let recipient = row.recipient.as_deref().ok_or("no recipient")?;
        let Some(smtp) = &self.smtp else {
            // Which email, never to whom or what it says: logs are kept and shipped far longer
            // and wider than the database, and a deleted customer's address must not outlive it.
            tracing::info!(
                message_id = %row.message_id,
                kind = %row.kind,
                "email (SMTP_URL unset: logged, not sent)"
            );
            return Ok(());
        };
        let body = row.body.clone().unwrap_or_default();
        let to = recipient
            .parse::<Mailbox>()
            .map_err(|e| format!("recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(check_subject(&row.subject)?)
            .message_id(Some(row.message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("building the message: {e}"))?;
        smtp.send(message)
            .await
            .map(drop)
            .map_err(|e| format!("SMTP: {e}"))
    }
}

/// What the sender uses besides its SMTP transport, built by the composition root (`app`).
#[derive(Clone)]
pub struct SenderHandles {
    pub db: crate::db::Db,
    /// This process's name on the email leases.
    pub worker_id: String,
    /// Woken after a farewell email, so no copy of its address waits in SQLite's WAL.
    pub wal_scrub: std::sync::Arc<tokio::sync::Notify>,
}

/// Sends what is queued until the process ends.
pub async fn run(
    handles: SenderHandles,
    sender: std::sync::Arc<Sender>,
    stop: tokio_util::sync::CancellationToken,
) {
    while !stop.is_cancelled() {
        match pass(&handles, &sender).await {
            // A full batch: there may be more at once.
            Ok(n) if n >= BATCH as usize => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "email sender: database unavailable"),
        }
        if stop
            .run_until_cancelled(tokio::time::sleep(POLL))
            .await
            .is_none()
        {
            return;
        }
    }
}

/// One batch; returns how many emails it took.
async fn pass(handles: &SenderHandles, sender: &Sender) -> Result<usize, sqlx::Error> {
    let owner = &handles.worker_id;
    let rows = notifications::claim(&handles.db, owner, BATCH, LEASE, Utc::now()).await?;
    for row in &rows {
        match sender.deliver(row).await {
            Ok(()) => {
                if !notifications::mark_sent(&handles.db, row.id, owner, Utc::now()).await? {
                    tracing::warn!(message_id = %row.message_id, "email sent after its lease ran out");
                }
                tracing::info!(message_id = %row.message_id, kind = %row.kind, customer_id = %row.customer_id, "email sent");
                wake_wal_scrub(handles, row);
            }
            Err(error) => {
                let gave_up =
                    notifications::retry(&handles.db, row, owner, &error, Utc::now()).await?;
                tracing::warn!(message_id = %row.message_id, kind = %row.kind, error = %error, gave_up, "email not sent");
                if gave_up {
                    wake_wal_scrub(handles, row);
                }
            }
        }
    }
    Ok(rows.len())
}

/// The farewell email's row held a deleted customer's address until now: the WAL still does.
fn wake_wal_scrub(handles: &SenderHandles, row: &Pending) {
    if row.kind == super::Kind::AccountDeleted.as_str() {
        handles.wal_scrub.notify_one();
    }
}
