mod consensus;
mod fuzz_corpus;
mod support;
