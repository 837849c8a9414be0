"""Foundation every stage shares: settings, errors, plain data types, logging, redaction."""
