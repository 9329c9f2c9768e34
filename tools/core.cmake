# tools: every main() of ringpost (ringpostd, ringpost, ringpost-bench).
