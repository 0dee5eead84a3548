//! Ingest credit (version 3 and later): how many PutBatch bytes a connection may have in flight.
//!
//! The server grants a window of `ingest_credit_bytes` in its hello. Sending a PutBatch frame
//! spends its `frame_bytes` (header included); the server gives them back with an IngestCredit
//! push once it has answered the request, whatever the answer. Both sides keep the same ledger:
//! the client spends before it sends and the server gives back after it answers, so the
//! client's balance is never above the server's, and a client that follows the ledger is never
//! refused.
//!
//! Invariants: `0 <= balance_bytes <= window_bytes`; a spend larger than the balance is refused
//! and changes nothing; a give-back that would lift the balance above the window is refused
//! (on the client it means the server broke the protocol; on the server it is a bug).

use crate::binary::limits::FRAME_BYTES_MAX;

/// Why the ledger refused a change.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestCreditError {
    #[error(
        "a PutBatch of {frame_bytes} bytes exceeds the connection's remaining ingest credit of {balance_bytes} bytes"
    )]
    Exceeded {
        frame_bytes: u32,
        balance_bytes: u32,
    },
    #[error(
        "giving back {bytes} bytes would lift the ingest credit from {balance_bytes} above its window of {window_bytes} bytes"
    )]
    AboveWindow {
        bytes: u32,
        balance_bytes: u32,
        window_bytes: u32,
    },
}

/// One connection's ingest credit ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestCredit {
    window_bytes: u32,
    balance_bytes: u32,
}

impl IngestCredit {
    /// A full window. It must hold the largest frame, or a lone PutBatch could never be sent.
    pub fn new(window_bytes: u32) -> Self {
        assert!(window_bytes as usize >= FRAME_BYTES_MAX);
        Self {
            window_bytes,
            balance_bytes: window_bytes,
        }
    }

    pub const fn window_bytes(&self) -> u32 {
        self.window_bytes
    }

    pub const fn balance_bytes(&self) -> u32 {
        self.balance_bytes
    }

    /// Spends the credit of one PutBatch frame of `frame_bytes`.
    pub fn spend(&mut self, frame_bytes: u32) -> Result<(), IngestCreditError> {
        if frame_bytes > self.balance_bytes {
            return Err(IngestCreditError::Exceeded {
                frame_bytes,
                balance_bytes: self.balance_bytes,
            });
        }
        self.balance_bytes -= frame_bytes;
        assert!(self.balance_bytes <= self.window_bytes);
        Ok(())
    }

    /// Gives back the credit of PutBatch frames the server has answered.
    pub fn give_back(&mut self, bytes: u32) -> Result<(), IngestCreditError> {
        let balance_bytes = self
            .balance_bytes
            .checked_add(bytes)
            .filter(|b| *b <= self.window_bytes)
            .ok_or(IngestCreditError::AboveWindow {
                bytes,
                balance_bytes: self.balance_bytes,
                window_bytes: self.window_bytes,
            })?;
        self.balance_bytes = balance_bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::limits::INGEST_CREDIT_BYTES;

    const WINDOW: u32 = FRAME_BYTES_MAX as u32;

    #[test]
    fn spending_within_the_window_succeeds_and_giving_back_restores_it() {
        let mut credit = IngestCredit::new(WINDOW);
        credit.spend(1000).expect("fits");
        credit.spend(WINDOW - 1000).expect("exactly the rest fits");
        assert_eq!(credit.balance_bytes(), 0);
        credit.give_back(1000).expect("answered");
        assert_eq!(credit.balance_bytes(), 1000);
        credit.give_back(WINDOW - 1000).expect("answered");
        assert_eq!(credit.balance_bytes(), WINDOW);
    }

    #[test]
    fn a_frame_larger_than_the_balance_is_refused_and_changes_nothing() {
        let mut credit = IngestCredit::new(WINDOW);
        credit.spend(WINDOW - 10).expect("fits");
        assert_eq!(
            credit.spend(11),
            Err(IngestCreditError::Exceeded {
                frame_bytes: 11,
                balance_bytes: 10
            })
        );
        assert_eq!(credit.balance_bytes(), 10);
        credit.spend(10).expect("the exact balance still fits");
    }

    #[test]
    fn giving_back_more_than_was_spent_is_refused() {
        let mut credit = IngestCredit::new(WINDOW);
        assert!(matches!(
            credit.give_back(1),
            Err(IngestCreditError::AboveWindow { .. })
        ));
        credit.spend(5).expect("fits");
        assert!(credit.give_back(6).is_err());
        assert!(credit.give_back(u32::MAX).is_err(), "no overflow");
        credit.give_back(5).expect("what was spent");
        assert_eq!(credit.balance_bytes(), WINDOW);
    }

    #[test]
    fn the_default_window_holds_two_largest_frames() {
        let mut credit = IngestCredit::new(INGEST_CREDIT_BYTES);
        credit.spend(WINDOW).expect("one largest frame");
        credit
            .spend(WINDOW)
            .expect("a second one while the first is in flight");
        assert!(credit.spend(16).is_err());
    }

    #[test]
    #[should_panic]
    fn a_window_smaller_than_the_largest_frame_is_a_bug() {
        let _ = IngestCredit::new(WINDOW - 1);
    }
}
