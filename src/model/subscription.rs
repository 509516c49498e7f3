//! The one state machine of a customer's subscription, driven by Stripe's events and by the
//! clock: trialing -> active -> past_due -> suspended -> canceled (-> deleted).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    /// In the free trial; nothing paid yet.
    Trialing,
    /// Paid for the current period.
    Active,
    /// A payment failed; the tenant runs on during the grace period.
    PastDue,
    /// Trial or grace over without payment: workloads scaled to zero, data kept.
    Suspended,
    /// The subscription ended; the tenant awaits deletion after the retention period.
    Canceled,
    /// The customer's data is gone.
    Deleted,
}

/// What happened to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Stripe reports the subscription in (or back in) a trial.
    TrialStarted,
    /// A payment went through (an invoice paid, a checkout completed, Stripe says `active`).
    Paid,
    /// A payment failed (an invoice's payment failed, Stripe says `past_due`).
    PaymentFailed,
    /// Stripe gave up collecting (`unpaid`, `paused`): nothing runs until paid.
    Unpaid,
    /// The plan changed; the status stays what it was.
    PlanChanged,
    /// The clock: the trial ended without payment.
    TrialExpired,
    /// The clock: the grace period after a failed payment ended.
    GraceExpired,
    /// The subscription was canceled (Stripe deleted it, or the customer left).
    Canceled,
    /// The clock: the retention period after cancellation ended; the data is erased.
    Erased,
}

const ALL: [SubscriptionStatus; 6] = {
    use SubscriptionStatus::*;
    [Trialing, Active, PastDue, Suspended, Canceled, Deleted]
};

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Suspended => "suspended",
            Self::Canceled => "canceled",
            Self::Deleted => "deleted",
        }
    }

    /// The next status, or None when the event does not apply in this status (a late payment
    /// failure for a canceled subscription): callers then leave the subscription alone.
    pub fn on(self, event: Event) -> Option<Self> {
        use SubscriptionStatus::*;
        match (self, event) {
            (Deleted, _) => None,
            (Canceled, Event::Erased) => Some(Deleted),
            (_, Event::Erased) => None,
            (_, Event::Canceled) => Some(Canceled),
            // A new subscription after cancellation brings the customer back.
            (_, Event::Paid) => Some(Active),
            (Canceled, _) => None,
            (Trialing | Active | PastDue, Event::PaymentFailed) => Some(PastDue),
            (Suspended, Event::PaymentFailed) => Some(Suspended),
            // Sales may extend a trial, also one that already ran out.
            (Trialing | Suspended, Event::TrialStarted) => Some(Trialing),
            (_, Event::Unpaid) => Some(Suspended),
            (_, Event::PlanChanged) => Some(self),
            (Trialing, Event::TrialExpired) => Some(Suspended),
            (PastDue, Event::GraceExpired) => Some(Suspended),
            _ => None,
        }
    }

    /// Whether the tenant's workloads run in this status.
    pub fn runs(self) -> bool {
        matches!(self, Self::Trialing | Self::Active | Self::PastDue)
    }
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrialStarted => "trial_started",
            Self::Paid => "paid",
            Self::PaymentFailed => "payment_failed",
            Self::Unpaid => "unpaid",
            Self::PlanChanged => "plan_changed",
            Self::TrialExpired => "trial_expired",
            Self::GraceExpired => "grace_expired",
            Self::Canceled => "canceled",
            Self::Erased => "erased",
        }
    }

    /// The event a Stripe subscription's `status` amounts to (None: `incomplete`, which
    /// waits for its first payment and changes nothing here).
    pub fn of_stripe_status(status: &str) -> Option<Self> {
        match status {
            "trialing" => Some(Self::TrialStarted),
            "active" => Some(Self::Paid),
            "past_due" => Some(Self::PaymentFailed),
            "unpaid" | "paused" => Some(Self::Unpaid),
            "canceled" | "incomplete_expired" => Some(Self::Canceled),
            _ => None,
        }
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriptionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ALL.into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown subscription status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::SubscriptionStatus::*;
    use super::*;

    #[test]
    fn the_paid_path_and_its_detours() {
        assert_eq!(Trialing.on(Event::Paid), Some(Active));
        assert_eq!(Active.on(Event::PaymentFailed), Some(PastDue));
        assert_eq!(PastDue.on(Event::Paid), Some(Active));
        assert_eq!(PastDue.on(Event::GraceExpired), Some(Suspended));
        assert_eq!(
            Suspended.on(Event::Paid),
            Some(Active),
            "payment reactivates"
        );
        assert_eq!(Trialing.on(Event::TrialExpired), Some(Suspended));
        assert_eq!(
            Active.on(Event::TrialExpired),
            None,
            "paid tenants have no trial"
        );
        assert_eq!(Active.on(Event::GraceExpired), None);
        assert_eq!(Active.on(Event::Unpaid), Some(Suspended));
        assert_eq!(
            Suspended.on(Event::PaymentFailed),
            Some(Suspended),
            "a failed retry keeps a suspended tenant suspended, not merely past due"
        );
        assert_eq!(Active.on(Event::TrialStarted), None);
        assert_eq!(Suspended.on(Event::TrialStarted), Some(Trialing));
        assert_eq!(PastDue.on(Event::PlanChanged), Some(PastDue));
    }

    #[test]
    fn cancellation_and_erasure() {
        for s in [Trialing, Active, PastDue, Suspended] {
            assert_eq!(s.on(Event::Canceled), Some(Canceled));
            assert_eq!(s.on(Event::Erased), None, "only canceled data is erased");
        }
        assert_eq!(Canceled.on(Event::PaymentFailed), None);
        assert_eq!(Canceled.on(Event::PlanChanged), None);
        assert_eq!(Canceled.on(Event::Paid), Some(Active), "a new subscription");
        assert_eq!(Canceled.on(Event::Erased), Some(Deleted));
        for e in [Event::Paid, Event::Canceled, Event::TrialStarted] {
            assert_eq!(Deleted.on(e), None, "nothing resurrects erased data");
        }
    }

    #[test]
    fn stripe_statuses_map_to_events() {
        assert_eq!(Event::of_stripe_status("active"), Some(Event::Paid));
        assert_eq!(
            Event::of_stripe_status("past_due"),
            Some(Event::PaymentFailed)
        );
        assert_eq!(Event::of_stripe_status("canceled"), Some(Event::Canceled));
        assert_eq!(Event::of_stripe_status("incomplete"), None);
    }

    #[test]
    fn parses_what_it_prints() {
        for s in ALL {
            assert_eq!(s.as_str().parse::<SubscriptionStatus>().unwrap(), s);
        }
        assert!("bogus".parse::<SubscriptionStatus>().is_err());
        assert!(Active.runs() && PastDue.runs() && !Suspended.runs());
    }
}
