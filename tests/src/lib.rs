//! Test support for mtrproto: fake mtr-packet and network simulator (work in progress).
