//! The protocol layer: mtr-packet's lines as types (tokens, words, requests, replies, MPLS
//! stacks), the grammar both directions share, the line framer, and the owned outcome of a
//! probe. No state beyond one line.

pub(crate) mod command;
pub(crate) mod flow;
pub(crate) mod framer;
pub(crate) mod grammar;
pub(crate) mod mpls;
pub(crate) mod names;
pub(crate) mod reply;
pub(crate) mod result;
pub(crate) mod token;
pub(crate) mod word;
