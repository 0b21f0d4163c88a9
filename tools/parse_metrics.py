#!/usr/bin/env python3
"""Parse the OpenMetrics text (the format Prometheus scrapes, and the one
pouwd serves) on stdin with prometheus_client's parser, which refuses any
line out of the format, and print it as JSON: [{"name", "type", "help",
"samples": [{"name", "labels", "value"}]}]. The metrics tests (tests/metrics.rs) read pouwd's /metrics
through it, so the node's text is checked by a parser that is not its own.
Run it with the Python of tools/prometheus_python.sh."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> None:
    families = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        families.append({
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": [
                {"name": s.name, "labels": dict(s.labels), "value": s.value}
                for s in family.samples
            ],
        })
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
