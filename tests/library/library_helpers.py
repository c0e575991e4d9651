"""Constants shared by the notebook API's tests: the sample's size and the split they train on."""

ROWS = 3_000
SPLIT = {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "strategyParams": {"randomSeed": "lib"}}
