//! Lock-free log path from the loop thread to a normal logging thread.

pub mod logrec;
