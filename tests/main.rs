mod fuzz_corpus;
