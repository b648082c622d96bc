package ui

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// page is what the layout renders around a page's content.
type page struct {
	Title string
	Nav   string // the active top-level link: search, console
	Data  any
	// Auth: tokens are required (the layout shows "sign out").
	Auth bool
}

var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// render executes the page template into a buffer first, so that a
// template error becomes a clean 500 instead of half a page.
func (u *UI) render(w http.ResponseWriter, status int, name string, p page) {
	p.Auth = u.o.Tokens != nil
	b := bufs.Get().(*bytes.Buffer)
	b.Reset()
	defer bufs.Put(b)
	t, tmpl := u.pages[name], "layout.html"
	if name == "results" { // the search results alone (live search)
		t, tmpl = u.pages["search"], "results"
	}
	if err := t.ExecuteTemplate(b, tmpl, p); err != nil {
		u.o.Log.Error("render a UI page: " + err.Error())
		http.Error(w, "the page could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (u *UI) notFound(w http.ResponseWriter, _ *http.Request, msg string) {
	u.render(w, http.StatusNotFound, "notfound", page{Title: "Not found", Data: msg})
}

// Links of every kind of page: the one place their addresses are made.
func featureURL(id string) string { return "/ui/features/" + url.PathEscape(id) }
func serviceURL(n string) string  { return "/ui/services/" + url.PathEscape(n) }
func datasetURL(id string) string { return "/ui/datasets/" + url.PathEscape(id) }
func modelURL(id string) string   { return "/ui/models/" + url.PathEscape(id) }
func sourceURL(n string) string   { return "/ui/sources/" + url.PathEscape(n) }
func entityURL(n string) string   { return "/ui/entities/" + url.PathEscape(n) }
func searchURL(k, v string) string {
	return Prefix + "?" + url.Values{k: {v}}.Encode()
}

var funcs = template.FuncMap{
	"featureURL": featureURL, "serviceURL": serviceURL, "datasetURL": datasetURL, "modelURL": modelURL,
	"sourceURL": sourceURL, "entityURL": entityURL, "searchURL": searchURL,
	"ago":      ago,
	"age":      age,
	"num":      num,
	"date":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"join":     strings.Join,
	"slug":     func(s string) string { return strings.ReplaceAll(s, " ", "-") },
	"statusOf": func(s string) string { return strings.ReplaceAll(s, " ", "-") },
	"short":    func(h string) string { return h[:min(len(h), 12)] },
	"float":    func(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) },
	"pct":      func(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" },
}

// age spells a duration for people: "4s", "3m", "2h 5m", "3d 4h".
func age(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

// ago is age of now - t, "never" for a zero t.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return age(max(now.Sub(t), 0)) + " ago"
}

// num writes an integer with thousands separators: 12,345.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
