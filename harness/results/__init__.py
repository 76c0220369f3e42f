"""Result formats: the run's results model and everything written from it.

Takes ``CellResult``s from the pin matrix; gives out results.json, JUnit, KTAP, kcidb, the HTML
summary and Markdown, night-to-night comparisons and CI shards (and merges them back).
"""
