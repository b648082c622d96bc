package aggregations_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want int64
	}{
		{"seconds", "90s", 90 * aggregations.Second},
		{"minutes", "15m", 15 * aggregations.Minute},
		{"hours", "1h", aggregations.Hour},
		{"days", "30d", 30 * aggregations.Day},
		{"leading zeros are allowed", "007m", 7 * aggregations.Minute},
		{"largest representable number of seconds", "9223372036854775s", 9223372036854775 * aggregations.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := aggregations.ParseDuration(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("ParseDuration(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, in, says string
	}{
		{"empty string is rejected", "", "too short"},
		{"number without unit is rejected", "5", "too short"},
		{"unit without number is rejected", "h", "too short"},
		{"zero is rejected", "0s", "positive"},
		{"negative is rejected", "-1h", "whole number"},
		{"explicit plus sign is rejected", "+1h", "whole number"},
		{"fractions are rejected", "1.5h", "whole number"},
		{"compound durations are rejected", "1h30m", "whole number"},
		{"weeks are not a unit", "2w", "unknown unit"},
		{"milliseconds are not a unit", "10ms", "whole number"},
		{"spaces are rejected", " 1h", "whole number"},
		{"upper-case units are rejected", "1H", "unknown unit"},
		{"overflow is rejected", "106751991167301d", "too large"},
		{"huge numbers are rejected", "99999999999999999999s", "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := aggregations.ParseDuration(tc.in)
			if !errors.Is(err, aggregations.ErrInvalidDuration) {
				t.Fatalf("ParseDuration(%q) = %d, %v; want ErrInvalidDuration", tc.in, got, err)
			}
			if !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "s, m, h or d") {
				t.Errorf("error %q should say %q and list the units", err, tc.says)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want string
	}{
		{30 * aggregations.Day, "30d"}, {36 * aggregations.Hour, "36h"}, {90 * aggregations.Minute, "90m"}, {90 * aggregations.Second, "90s"}, {1500, "1500ms"}, {0, "0ms"},
	} {
		if got := aggregations.FormatDuration(tc.ms); got != tc.want {
			t.Errorf("FormatDuration(%d) = %q, want %q", tc.ms, got, tc.want)
		}
		if tc.ms%aggregations.Second == 0 && tc.ms > 0 {
			if back, err := aggregations.ParseDuration(tc.want); err != nil || back != tc.ms {
				t.Errorf("ParseDuration(FormatDuration(%d)) = %d, %v", tc.ms, back, err)
			}
		}
	}
}

func TestDefaultHop(t *testing.T) {
	for _, tc := range []struct {
		name       string
		size, want int64
	}{
		{"lifetime hops by a day", 0, aggregations.Day},
		{"30d hops by a day", 30 * aggregations.Day, aggregations.Day},
		{"exactly 12d hops by a day", 12 * aggregations.Day, aggregations.Day},
		{"just under 12d hops by an hour", 12*aggregations.Day - aggregations.Hour, aggregations.Hour},
		{"exactly 12h hops by an hour", 12 * aggregations.Hour, aggregations.Hour},
		{"just under 12h hops by 5m", 12*aggregations.Hour - 5*aggregations.Minute, 5 * aggregations.Minute},
		{"1h hops by 5m", aggregations.Hour, 5 * aggregations.Minute},
		{"exactly 5m hops by 5m", 5 * aggregations.Minute, 5 * aggregations.Minute},
		{"a window shorter than 5m hops by itself", 90 * aggregations.Second, 90 * aggregations.Second},
		{"a negative size has no hop", -aggregations.Day, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := aggregations.DefaultHop(tc.size); got != tc.want {
				t.Fatalf("DefaultHop(%d) = %d, want %d", tc.size, got, tc.want)
			}
		})
	}
}

func TestParseWindow(t *testing.T) {
	for _, tc := range []struct {
		name, window, hop string
		want              aggregations.Window
		str               string
	}{
		{"explicit hop", "30d", "1d", aggregations.Window{Size: 30 * aggregations.Day, Hop: aggregations.Day}, "30d/1d"},
		{"empty hop takes the default", "7d", "", aggregations.Window{Size: 7 * aggregations.Day, Hop: aggregations.Hour}, "7d/1h"},
		{"hop equal to the window is a tumbling window", "1h", "1h", aggregations.Window{Size: aggregations.Hour, Hop: aggregations.Hour}, "1h/1h"},
		{"lifetime with the default hop", "lifetime", "", aggregations.Window{Size: 0, Hop: aggregations.Day}, "lifetime/1d"},
		{"lifetime with an explicit hop", "lifetime", "1h", aggregations.Window{Size: 0, Hop: aggregations.Hour}, "lifetime/1h"},
		{"short window defaults to its own size", "90s", "", aggregations.Window{Size: 90 * aggregations.Second, Hop: 90 * aggregations.Second}, "90s/90s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := aggregations.ParseWindow(tc.window, tc.hop)
			if err != nil || got != tc.want {
				t.Fatalf("ParseWindow(%q, %q) = %+v, %v; want %+v", tc.window, tc.hop, got, err, tc.want)
			}
			if got.String() != tc.str {
				t.Errorf("String() = %q, want %q", got.String(), tc.str)
			}
			if got.Lifetime() != (tc.window == "lifetime") {
				t.Errorf("Lifetime() = %v", got.Lifetime())
			}
		})
	}
	for _, tc := range []struct {
		name, window, hop string
		is                error
		part              string // WindowError.Part: the setting to change
		says              string
	}{
		{"hop longer than the window", "1h", "2h", aggregations.ErrInvalidWindow, "hop", "longer than window 1h"},
		{"window not a multiple of the hop", "10m", "3m", aggregations.ErrInvalidWindow, "hop", "not a whole multiple of hop 3m"},
		{"window not a multiple of the default hop", "300h", "", aggregations.ErrInvalidWindow, "window", "default hop 1d"},
		{"zero hop", "1h", "0m", aggregations.ErrInvalidDuration, "hop", "must be positive"},
		{"unparsable window", "30days", "", aggregations.ErrInvalidDuration, "window", "lifetime"},
		{"unparsable window with a valid hop", "30days", "1h", aggregations.ErrInvalidDuration, "window", "lifetime"},
		{"lifetime is not a hop", "30d", "lifetime", aggregations.ErrInvalidDuration, "hop", `"lifetime"`},
		{"lifetime with an unparsable hop", "lifetime", "soon", aggregations.ErrInvalidDuration, "hop", `"soon"`},
		{"empty window", "", "1d", aggregations.ErrInvalidDuration, "window", "too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := aggregations.ParseWindow(tc.window, tc.hop)
			if !errors.Is(err, tc.is) {
				t.Fatalf("ParseWindow(%q, %q) = %+v, %v; want %v", tc.window, tc.hop, got, err, tc.is)
			}
			var we *aggregations.WindowError
			if !errors.As(err, &we) {
				t.Fatalf("error %v (%T) is not a *WindowError", err, err)
			}
			if we.Part != tc.part || !strings.Contains(we.Msg, tc.says) || strings.Contains(we.Msg, "aggregations:") {
				t.Errorf("WindowError{Part: %q, Msg: %q}; want part %q and a message saying %q without the package prefix", we.Part, we.Msg, tc.part, tc.says)
			}
			// The message starts with the sentinel's own words, so a caller
			// printing Msg alone still says what kind of problem it is.
			if kind := strings.TrimPrefix(tc.is.Error(), "aggregations: "); !strings.HasPrefix(we.Msg, kind) {
				t.Errorf("Msg %q does not start with %q", we.Msg, kind)
			}
			if want := "aggregations: " + tc.part + ": " + we.Msg; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestWindowValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    aggregations.Window
		ok   bool
	}{
		{"zero hop is invalid", aggregations.Window{Size: aggregations.Day}, false},
		{"negative hop is invalid", aggregations.Window{Size: aggregations.Day, Hop: -aggregations.Hour}, false},
		{"negative size is invalid", aggregations.Window{Size: -aggregations.Day, Hop: aggregations.Hour}, false},
		{"lifetime with any positive hop is valid", aggregations.Window{Hop: 7}, true},
		{"multiple of the hop is valid", aggregations.Window{Size: 6, Hop: 3}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.w.Validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, aggregations.ErrInvalidWindow)) {
				t.Fatalf("Validate(%+v) = %v, want ok=%v", tc.w, err, tc.ok)
			}
		})
	}
}

func TestWindowBounds(t *testing.T) {
	w := aggregations.Window{Size: 30, Hop: 10}
	life := aggregations.Window{Size: 0, Hop: 10}
	for _, tc := range []struct {
		name string
		got  int64
		want int64
	}{
		{"start is T - size when T is on a hop boundary", w.Start(100), 70},
		{"start floors T - size to the hop", w.Start(109), 70},
		{"start just past a boundary", w.Start(111), 80},
		{"start floors negative times down, not toward zero", w.Start(15), -20},
		{"start of an exact negative multiple", w.Start(0), -30},
		{"start floors -1 to -10", w.Start(29), -10},
		{"lifetime start is the minimum time", life.Start(100), math.MinInt64},
		{"tile start of a positive time", w.TileStart(19), 10},
		{"tile start of a boundary is itself", w.TileStart(20), 20},
		{"tile start of a negative time floors", w.TileStart(-1), -10},
		{"tile start of a negative boundary", w.TileStart(-10), -10},
		{"horizon keeps one hop below the window start", w.Horizon(109), 60},
		{"lifetime horizon keeps two hops below the current tile", life.Horizon(109), 80},
		{"start saturates instead of wrapping", w.Start(math.MinInt64 + 5), math.MinInt64},
		{"an invalid zero hop does not panic", aggregations.Window{Size: 30}.TileStart(7), 7},
		{"start of the largest time does not wrap", aggregations.Window{Size: 30, Hop: 10}.Start(math.MaxInt64), 9223372036854775770},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %d, want %d", tc.got, tc.want)
			}
		})
	}
}
