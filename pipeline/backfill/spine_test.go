package backfill

import "testing"

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		bad      bool
	}{
		{"epoch milliseconds", "1700000000123", 1700000000123, false},
		{"RFC 3339 in UTC", "2023-11-14T22:13:20Z", 1700000000000, false},
		{"RFC 3339 with an offset", "2023-11-15T00:13:20+02:00", 1700000000000, false},
		{"whole milliseconds are exact", "2023-11-14T22:13:20.123Z", 1700000000123, false},
		{"a sub-millisecond fraction rounds up, so ts < T stays exact", "2023-11-14T22:13:20.123001Z", 1700000000124, false},
		{"surrounding spaces are ignored", " 42 ", 42, false},
		{"garbage is rejected", "abc", 0, true},
		{"an empty cell is rejected", "", 0, true},
		{"a date without time is rejected", "2023-11-14", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := parseTime(tc.in)
			if (why != "") != tc.bad || (!tc.bad && got != tc.want) {
				t.Fatalf("parseTime(%q) = %d, %q; want %d, bad=%v", tc.in, got, why, tc.want, tc.bad)
			}
		})
	}
}

func TestFormatOf(t *testing.T) {
	for in, want := range map[string]Format{"a.csv": FormatCSV, "b.PARQUET": FormatParquet, "c.json": "", "d": ""} {
		got, err := FormatOf(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("FormatOf(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
