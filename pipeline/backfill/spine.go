package backfill

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/featurepipe/featurepipe/internal/keys"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// TimestampColumn is the spine column holding each row's point in time T.
const TimestampColumn = "timestamp"

// Format is a file format, chosen by the file's extension.
type Format string

// The supported formats.
const (
	FormatCSV     Format = "csv"
	FormatParquet Format = "parquet"
)

// ErrFormat is wrapped by the errors of FormatOf.
var ErrFormat = errors.New("backfill: unsupported file format")

// FormatOf returns the format of path from its extension: .csv or .parquet
// (case-insensitive).
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return FormatCSV, nil
	case ".parquet":
		return FormatParquet, nil
	}
	return "", fmt.Errorf("%w: %s: want a .csv or .parquet file", ErrFormat, path)
}

// BadRow is a spine row that cannot be used. Row counts data rows from 1 (the
// CSV header is not a row).
type BadRow struct {
	Row    int    `json:"row"`
	Reason string `json:"reason"`
}

// BadRowsError reports the unusable rows of a spine. Run returns it, before
// writing anything, unless Options.SkipBadRows is set.
type BadRowsError struct {
	Path string
	Rows []BadRow // every bad row, in file order
}

// maxReported bounds the rows listed in a BadRowsError message.
const maxReported = 10

func (e *BadRowsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d bad spine row(s) (fix them or pass --skip-bad-rows to drop them):", len(e.Rows))
	for i, r := range e.Rows {
		if i == maxReported {
			fmt.Fprintf(&b, "\n  ... and %d more", len(e.Rows)-maxReported)
			break
		}
		fmt.Fprintf(&b, "\n  %s row %d: %s", filepath.Base(e.Path), r.Row, r.Reason)
	}
	return b.String()
}

// spine is a loaded spine: the raw table plus, per good row, its key and T.
type spine struct {
	path    string
	format  Format
	sha256  string
	columns []string

	// Exactly one of records (CSV) and prows (Parquet) is set; both hold
	// every data row of the file, good or bad.
	records [][]string
	pschema *parquet.Schema
	prows   []parquet.Row

	keyCols []int // the entity's key columns, in key order
	tsCol   int
	good    []int    // indexes of the good rows, in file order
	keys    []string // per good row
	times   []int64  // per good row, epoch ms
	bad     []BadRow
}

// rows is the number of data rows in the file.
func (s *spine) rows() int {
	if s.format == FormatCSV {
		return len(s.records)
	}
	return len(s.prows)
}

// readSpine loads the table of path; parse must be called before use.
func readSpine(path string) (*spine, error) {
	format, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return nil, err
	}
	s := &spine{path: path, format: format, sha256: sum}
	if format == FormatCSV {
		err = s.readCSV()
	} else {
		err = s.readParquet()
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open spine: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read spine %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (s *spine) readCSV() error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("open spine: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("spine %s is empty: want a header row naming the key and %q columns", s.path, TimestampColumn)
	}
	if err != nil {
		return fmt.Errorf("spine %s: %w", s.path, err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff") // a BOM written by spreadsheets
	}
	s.columns = header
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("spine %s: %w", s.path, err)
		}
		s.records = append(s.records, rec)
	}
	return nil
}

func (s *spine) readParquet() error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("open spine: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("spine %s: %w", s.path, err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return fmt.Errorf("spine %s: not a readable Parquet file: %w", s.path, err)
	}
	s.pschema = pf.Schema()
	for _, fld := range s.pschema.Fields() {
		if !fld.Leaf() || fld.Repeated() {
			return fmt.Errorf("spine %s: column %q is nested or repeated; a spine has flat columns only", s.path, fld.Name())
		}
		s.columns = append(s.columns, fld.Name())
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	buf := make([]parquet.Row, 256)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			s.prows = append(s.prows, row.Clone())
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("spine %s: read rows: %w", s.path, err)
		}
	}
	return nil
}

// column returns the index of the column named name, or -1.
func (s *spine) column(name string) int {
	for i, c := range s.columns {
		if c == name {
			return i
		}
	}
	return -1
}

// parse extracts the entity key and T of every row, collecting the bad
// rows. The key is keys.EntityKey over the columns named after the
// entity's key fields (one for a single-key entity), the function every
// read path keys entities with.
func (s *spine) parse(keyColumns []string) error {
	s.keyCols, s.tsCol = make([]int, len(keyColumns)), s.column(TimestampColumn)
	var missing []string
	for i, kc := range keyColumns {
		if s.keyCols[i] = s.column(kc); s.keyCols[i] < 0 {
			missing = append(missing, strconv.Quote(kc))
		}
	}
	if s.tsCol < 0 {
		missing = append(missing, strconv.Quote(TimestampColumn))
	}
	if len(missing) > 0 {
		return fmt.Errorf("spine %s has no column %s (its columns: %s)", s.path, strings.Join(missing, " or "), strings.Join(s.columns, ", "))
	}
	var tsType parquet.Type
	if s.format == FormatParquet {
		tsType = s.pschema.Fields()[s.tsCol].Type()
	}
	n := s.rows()
	s.good = make([]int, 0, n)
	s.keys = make([]string, 0, n)
	s.times = make([]int64, 0, n)
	vals := make([]string, len(keyColumns))
	for i := 0; i < n; i++ {
		var key string
		var T int64
		var why string
		if s.format == FormatCSV {
			rec := s.records[i]
			for j, c := range s.keyCols {
				if vals[j] = rec[c]; vals[j] == "" && why == "" {
					why = fmt.Sprintf("key %q is empty", keyColumns[j])
				}
			}
			if why == "" {
				if T, why = parseTime(rec[s.tsCol]); why != "" {
					why = fmt.Sprintf("%s %q: %s", TimestampColumn, rec[s.tsCol], why)
				}
			}
		} else {
			row := s.prows[i]
			for j, c := range s.keyCols {
				if why == "" {
					vals[j], why = parquetKey(row[c], keyColumns[j])
				}
			}
			if why == "" {
				T, why = parquetTime(row[s.tsCol], tsType)
			}
		}
		if why == "" {
			key = keys.EntityKey(vals)
		}
		if why != "" {
			s.bad = append(s.bad, BadRow{Row: i + 1, Reason: why})
			continue
		}
		s.good = append(s.good, i)
		s.keys = append(s.keys, key)
		s.times = append(s.times, T)
	}
	return nil
}

const timeWant = "want RFC 3339 or epoch milliseconds"

// ParseTime parses a point in time as the spine's timestamp column is
// parsed (see parseTime) and returns it in epoch milliseconds: for flags
// that name a time, such as skew's --since.
func ParseTime(text string) (int64, error) {
	ms, why := parseTime(text)
	if why != "" {
		return 0, fmt.Errorf("%q: %s", strings.TrimSpace(text), why)
	}
	return ms, nil
}

// parseTime parses RFC 3339 (with any fraction of a second) or whole epoch
// milliseconds. A fraction below one millisecond rounds up: an event at
// millisecond m is before T exactly when m < ceil(T).
func parseTime(text string) (int64, string) {
	text = strings.TrimSpace(text)
	if text == "" {
		return 0, "missing; " + timeWant
	}
	if ms, err := strconv.ParseInt(text, 10, 64); err == nil {
		return ms, ""
	}
	t, err := time.Parse(time.RFC3339Nano, text)
	if err != nil {
		return 0, timeWant
	}
	return CeilMilli(t), ""
}

// CeilMilli returns t in epoch milliseconds, sub-millisecond digits rounded
// up: an event at ts (ms) is before t exactly when ts < CeilMilli(t). It is
// T of every spine row given as a time (and of feastflight's entity rows).
func CeilMilli(t time.Time) int64 {
	nsec := int64(t.Nanosecond())
	ms := t.Unix()*1000 + nsec/1e6
	if nsec%1e6 != 0 {
		ms++
	}
	return ms
}

// parquetKey returns the entity key of a Parquet value: strings as they are,
// integers in decimal.
func parquetKey(v parquet.Value, keyColumn string) (string, string) {
	if v.IsNull() {
		return "", fmt.Sprintf("key %q is null", keyColumn)
	}
	var key string
	switch v.Kind() {
	case parquet.ByteArray, parquet.FixedLenByteArray:
		key = string(v.ByteArray())
	case parquet.Int32:
		key = strconv.FormatInt(int64(v.Int32()), 10)
	case parquet.Int64:
		key = strconv.FormatInt(v.Int64(), 10)
	default:
		return "", fmt.Sprintf("key %q has type %s; want a string or an integer", keyColumn, v.Kind())
	}
	if key == "" {
		return "", fmt.Sprintf("key %q is empty", keyColumn)
	}
	return key, ""
}

// parquetTime returns T of a Parquet value: TIMESTAMP (any unit), DATE, a
// plain integer (epoch milliseconds) or a string (RFC 3339 or epoch ms).
func parquetTime(v parquet.Value, typ parquet.Type) (int64, string) {
	if v.IsNull() {
		return 0, TimestampColumn + " is null; " + timeWant
	}
	lt := typ.LogicalType()
	switch v.Kind() {
	case parquet.Int64:
		n := v.Int64()
		if lt != nil {
			if ts, ok := lt.Value.(*format.TimestampType); ok {
				switch ts.Unit.Value.(type) {
				case *format.MicroSeconds:
					return floorDiv(n, 1000) + b2i(n%1000 != 0), ""
				case *format.NanoSeconds:
					return floorDiv(n, 1e6) + b2i(n%1e6 != 0), ""
				}
			}
		}
		return n, ""
	case parquet.Int32:
		if lt != nil {
			if _, ok := lt.Value.(*format.DateType); ok {
				return int64(v.Int32()) * 86_400_000, ""
			}
		}
		return int64(v.Int32()), ""
	case parquet.ByteArray:
		text := string(v.ByteArray())
		T, why := parseTime(text)
		if why != "" {
			return 0, fmt.Sprintf("%s %q: %s", TimestampColumn, text, why)
		}
		return T, ""
	}
	return 0, fmt.Sprintf("%s has type %s; %s", TimestampColumn, v.Kind(), timeWant)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// cellString formats a Parquet value as CSV text; null is "".
func cellString(v parquet.Value) string {
	if v.IsNull() {
		return ""
	}
	switch v.Kind() {
	case parquet.Boolean:
		return strconv.FormatBool(v.Boolean())
	case parquet.Int32:
		return strconv.FormatInt(int64(v.Int32()), 10)
	case parquet.Int64:
		return strconv.FormatInt(v.Int64(), 10)
	case parquet.Float:
		return strconv.FormatFloat(float64(v.Float()), 'g', -1, 32)
	case parquet.Double:
		return formatFloat(v.Double())
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return string(v.ByteArray())
	}
	return v.String()
}

// formatFloat is the shortest text that parses back to f.
func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
