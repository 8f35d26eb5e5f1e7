"""Everything that turns a user's files into a job's items: submit, inputs (images, TIFF, PDF, ZIP),
decode, workbooks (books, excel, sources, workbook_limits) and folders.
Imports jobs.engines, jobs.ops and jobs.store."""
