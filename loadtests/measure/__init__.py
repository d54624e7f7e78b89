"""`make bench`: the one instrument. One program measures every design on one stack
configuration each with open-model load (loadtests/load), writes one results.json
(loadtests/measure/schema.py) and renders one report from it."""
