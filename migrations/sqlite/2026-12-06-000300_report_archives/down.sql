DROP TABLE report_archives;
