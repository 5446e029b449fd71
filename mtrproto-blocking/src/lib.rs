//! Blocking mtr-packet session (work in progress).
