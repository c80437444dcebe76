"""Readers of the data sets' file formats, apart from the tasks that use them.

`files` (the shared helpers: required files, gzip, text, .npz caches, and `DataError`), `ts` (the
UEA/UCR `.ts` format), `idx` (MNIST's IDX), `cifar` (CIFAR-10's pickled python batches),
`pianoroll` (piano rolls from the Boulanger-Lewandowski pickles and music21 scores), `series_csv`
(one series per CSV file). Every reader raises `DataError` with one line naming the file for input
that is missing, truncated or not in its format.
"""
