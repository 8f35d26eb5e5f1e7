"""A job's results out: the json, csv, txt and xlsx exports and the write-back into the user's own
workbook. Imports jobs.intake (to reopen a workbook), jobs.ops and jobs.store."""
