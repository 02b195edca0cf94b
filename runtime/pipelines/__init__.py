"""Task pipelines over loaded artifacts (numpy in, numpy out): one module per job."""
