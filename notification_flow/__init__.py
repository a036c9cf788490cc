"""What client.py, server.py and cronjob.py share: settings, the job store, the Speechmatics API client and
transcript storage. Each module owns one concern, so each script reads as the pattern it implements."""
