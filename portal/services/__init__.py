"""Domain operations shared by the web pages, the API and the jobs; views stay thin."""
