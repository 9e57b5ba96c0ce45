"""The CronJob controller (batch/v1): a Job for each time the schedule comes due."""
