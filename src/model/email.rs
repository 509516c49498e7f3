//! The typed values of the email queue: what kind of email, and where it is. Shared by
//! `notify` (which queues and sends) and `db` (which stores their `as_str`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Welcome,
    Suspended,
    PaymentFailed,
    AccountDeleted,
    TrialEnding,
    InstanceReady,
    DeletionReminder,
    LoginAttempts,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Welcome => "welcome",
            Kind::Suspended => "suspended",
            Kind::PaymentFailed => "payment_failed",
            Kind::AccountDeleted => "account_deleted",
            Kind::TrialEnding => "trial_ending",
            Kind::InstanceReady => "instance_ready",
            Kind::DeletionReminder => "deletion_reminder",
            Kind::LoginAttempts => "login_attempts",
        }
    }
}

/// Where an email is: waiting (or leased) to be sent, sent, or given up. Stored as `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Sent,
    Failed,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Failed => "failed",
        }
    }
}
