.PHONY: test run bench fuzz

# Every check and test (gofmt, vet, staticcheck, go test -race with Redis,
# Node and Chromium); installs what is missing.
test: ; scripts/test.sh

# The example MCP server behind a fake Cognito on loopback.
run: ; go run ./examples/server

# Benchmarks with their baselines, compared with benchstat; see BENCHMARKS.md.
# Pick steps with make bench STEPS="micro load".
bench: ; scripts/bench.sh $(STEPS)

# Every fuzz target, one after another, FUZZTIME each (default 60s); prints
# each target's exec count. See SECURITY.md.
fuzz: ; scripts/fuzz.sh $(FUZZTIME)
