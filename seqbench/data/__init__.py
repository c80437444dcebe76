"""The real data sets' files: what exists (`catalog`) and how to fetch them (`download`, the
`seqbench data list` and `seqbench data download` commands)."""
