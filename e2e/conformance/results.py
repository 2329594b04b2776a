"""Per-test results of a conformance run from its `go test -v` log (used by run.sh).

The suite's tests are the first level of subtests of TestGatewayAPIConformance, named by their
ShortName. `go test -v` prints their `--- PASS/FAIL/SKIP` lines only when the whole run ends;
when the run was cut (time bound), the results are rebuilt from the log instead: a test that
started and was not skipped failed if any assertion of it (or of its subtests) failed
(`Test: TestGatewayAPIConformance/NAME...`), is unfinished if Go's timeout listed it as still
running, and passed otherwise.

    python3 results.py SUITE_LOG RESULTS_FILE    exit 1 when a test failed or none passed
"""
import re
import sys

PREFIX = "TestGatewayAPIConformance/"


def parse(lines):
    final = {}
    started, skipped, failed, running = [], set(), set(), set()
    in_running = False
    for line in lines:
        m = re.match(r"^    --- (PASS|FAIL|SKIP): " + PREFIX + r"([^/\s]+) ", line)
        if m:
            final[m.group(2)] = m.group(1)
        m = re.match(r"^=== RUN   " + PREFIX + r"([^/\s]+)$", line.rstrip("\n"))
        if m and m.group(1) not in started:
            started.append(m.group(1))
        m = re.search(r"Skipping (\S+): ", line)
        if m:
            skipped.add(m.group(1))
        m = re.search(r"\bTest:\s+" + PREFIX + r"([^/\s]+)", line)
        if m:
            failed.add(m.group(1))
        if line.startswith("running tests:"):
            in_running = True
        elif in_running:
            m = re.match(r"^\s+" + PREFIX + r"([^/\s]+)", line)
            if m:
                running.add(m.group(1))
            elif line.strip():
                in_running = False
    if final:
        return final, True
    results = {}
    for name in started:
        if name in skipped:
            results[name] = "SKIP"
        elif name in failed:
            results[name] = "FAIL"
        elif name in running:
            results[name] = "UNFINISHED"
        else:
            results[name] = "PASS"
    return results, False


def main():
    with open(sys.argv[1], errors="replace") as f:
        results, complete = parse(f)
    with open(sys.argv[2], "w") as f:
        for name in sorted(results):
            f.write(f"{results[name]} {name}\n")
    names = lambda r: sorted(n for n, v in results.items() if v == r)
    for n in names("FAIL"):
        print(f"FAIL - {n}")
    for n in names("UNFINISHED"):
        print(f"UNFINISHED - {n} (still running when the time bound cut the suite)")
    if not complete:
        print("the suite did not finish: results rebuilt from the log")
    print(f"skipped (feature not claimed, or filtered out): {len(names('SKIP'))}")
    print(f"{len(names('PASS'))} passed, {len(names('FAIL'))} failed")
    sys.exit(1 if names("FAIL") or names("UNFINISHED") or not names("PASS") else 0)


if __name__ == "__main__":
    main()
