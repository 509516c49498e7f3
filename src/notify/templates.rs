//! The words of each email: a fixed subject (no customer text, so nothing can reach a header)
//! and a plain-text body.

use super::Kind;

/// One email and the facts it names.
#[derive(Debug, Clone)]
pub enum Email<'a> {
    Welcome {
        company_name: &'a str,
        trial_ends_at: &'a str,
        instance_url: &'a str,
    },
    Suspended {
        company_name: &'a str,
    },
    PaymentFailed {
        company_name: &'a str,
        grace_days: u32,
    },
    /// Sent after the personal data is gone: it names nobody.
    AccountDeleted,
    TrialEnding {
        company_name: &'a str,
        trial_ends_at: &'a str,
        days_left: i64,
    },
    InstanceReady {
        company_name: &'a str,
        instance_url: &'a str,
    },
    DeletionReminder {
        company_name: &'a str,
        deleted_on: &'a str,
    },
    /// Failed logins past the per-account limit: counts only, nothing the attacker typed.
    LoginAttempts {
        company_name: &'a str,
        failures: i64,
        addresses: i64,
        window_minutes: i64,
        reset_url: Option<&'a str>,
    },
}

impl Email<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Email::Welcome { .. } => Kind::Welcome,
            Email::Suspended { .. } => Kind::Suspended,
            Email::PaymentFailed { .. } => Kind::PaymentFailed,
            Email::AccountDeleted => Kind::AccountDeleted,
            Email::TrialEnding { .. } => Kind::TrialEnding,
            Email::InstanceReady { .. } => Kind::InstanceReady,
            Email::DeletionReminder { .. } => Kind::DeletionReminder,
            Email::LoginAttempts { .. } => Kind::LoginAttempts,
        }
    }

    pub fn subject(&self) -> &'static str {
        match self.kind() {
            Kind::Welcome => "Welcome to Iotistic",
            Kind::Suspended => "Your Iotistic subscription is suspended",
            Kind::PaymentFailed => "Your Iotistic payment failed",
            Kind::AccountDeleted => "Your Iotistic account is deleted",
            Kind::TrialEnding => "Your Iotistic trial ends soon",
            Kind::InstanceReady => "Your Iotistic instance is ready",
            Kind::DeletionReminder => "Your Iotistic account will be deleted",
            Kind::LoginAttempts => "Failed logins to your Iotistic account",
        }
    }

    pub fn body(&self) -> String {
        match self {
            Email::Welcome {
                company_name,
                trial_ends_at,
                instance_url,
            } => format!(
                "Hello {company_name},\n\nwelcome to Iotistic. Your free trial runs until \
                 {trial_ends_at}.\nYour instance is being set up at {instance_url}.\n"
            ),
            Email::Suspended { company_name } => format!(
                "Hello {company_name},\n\nyour subscription is suspended: your instance is \
                 stopped and your data is kept. Pay or choose a plan to start it again.\n"
            ),
            Email::PaymentFailed {
                company_name,
                grace_days,
            } => format!(
                "Hello {company_name},\n\na payment for your subscription failed. Your \
                 instance keeps running for {grace_days} days; please update your payment \
                 method before then.\n"
            ),
            Email::TrialEnding {
                company_name,
                trial_ends_at,
                days_left,
            } => format!(
                "Hello {company_name},\n\nyour free trial ends in {days_left} days, on \
                 {trial_ends_at}. Choose a plan to keep your instance running; without one it \
                 is stopped then, and your data is kept.\n"
            ),
            Email::InstanceReady {
                company_name,
                instance_url,
            } => format!("Hello {company_name},\n\nyour instance is ready at {instance_url}.\n"),
            Email::DeletionReminder {
                company_name,
                deleted_on,
            } => format!(
                "Hello {company_name},\n\nyour subscription is canceled. Your account, its \
                 data and your instance will be deleted on {deleted_on}. Choose a plan before \
                 then to keep them.\n"
            ),
            Email::LoginAttempts {
                company_name,
                failures,
                addresses,
                window_minutes,
                reset_url,
            } => {
                let reset = match reset_url {
                    Some(url) => format!("reset your password at {url}"),
                    None => "contact Iotistic support to have your password reset".to_string(),
                };
                format!(
                    "Hello {company_name},\n\n{failures} logins to your account failed in \
                     the last {window_minutes} minutes, from {addresses} addresses. Until \
                     they stop, logins from addresses you have not used are slowed down; \
                     where you usually log in, you still can.\n\nIf this was not you, \
                     someone may be guessing your password: if it is used anywhere else or \
                     easy to guess, {reset}.\n"
                )
            }
            Email::AccountDeleted => "Hello,\n\nyour Iotistic account and its personal data \
                 are deleted, and your instance is being removed. This is the last email we \
                 send to this address.\n"
                .to_string(),
        }
    }
}

/// A subject with a line break could start a header of its own: refused outright, although
/// lettre encodes headers and our subjects are fixed.
pub fn check_subject(subject: &str) -> Result<&str, String> {
    if subject.contains(['\r', '\n']) {
        return Err("subject contains a line break".into());
    }
    Ok(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_single_lines_and_bodies_name_the_customer() {
        let e = Email::PaymentFailed {
            company_name: "Acme",
            grace_days: 7,
        };
        assert_eq!(
            check_subject(e.subject()),
            Ok("Your Iotistic payment failed")
        );
        assert!(e.body().contains("Acme") && e.body().contains("7 days"));
        assert!(check_subject("a\r\nBcc: x@y.z").is_err());
        assert!(!Email::AccountDeleted.body().contains("Acme"));
        let warned = Email::LoginAttempts {
            company_name: "Acme",
            failures: 10,
            addresses: 9,
            window_minutes: 15,
            reset_url: Some("https://iotistic.example/reset"),
        }
        .body();
        assert!(warned.contains("10 logins") && warned.contains("from 9 addresses"));
        assert!(
            warned.contains("at https://iotistic.example/reset"),
            "{warned}"
        );
    }
}
