"""The hostile corpus (issue 14): files an attacker can drop into the job folder or upload, made by code
at test time (no committed binaries). Each module builds one family; tests in this folder use them."""
