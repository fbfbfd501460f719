package pipedrive

// SetActivityPageSize lowers the page size of activity listings, so tests reach the second
// page without writing 500 activities.
func SetActivityPageSize(c *Connector, n int) { c.activityPage = n }
