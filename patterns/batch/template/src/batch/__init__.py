"""The batch job: score a whole data set with Spark, write Parquet, load PostgreSQL."""
