//! Stripe: webhook signature verification, event parsing, and their effects.
