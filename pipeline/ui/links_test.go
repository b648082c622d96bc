package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// pageLinks returns the href and src attributes of an HTML page (SVG
// links included), decoded as a browser would.
func pageLinks(t *testing.T, body string) []string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse HTML: %v", err)
	}
	var out []string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				if a.Key == "href" || a.Key == "src" || a.Key == "action" {
					out = append(out, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out
}

// TestNoBrokenInternalLinks crawls every page reachable from the search
// page of a catalog with dozens of features, services, datasets and models
// and fails on any internal link that does not answer 200 (or a redirect
// to a page that does), listing the page it is on.
func TestNoBrokenInternalLinks(t *testing.T) {
	f := newFixture(t, 60)
	u := f.ui(t, Options{API: http.NotFoundHandler()})
	srv := httptest.NewServer(u)
	defer srv.Close()
	seen := map[string]string{"/ui/": "(start)"} // link -> first page linking it
	queue := []string{"/ui/"}
	kinds := map[string]int{}
	var broken []string
	client := srv.Client()
	for len(queue) > 0 {
		link := queue[0]
		queue = queue[1:]
		resp, err := client.Get(srv.URL + link)
		if err != nil {
			t.Fatalf("GET %s: %v", link, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			broken = append(broken, link+" ("+resp.Status+") linked from "+seen[link])
			continue
		}
		if parts := strings.Split(strings.TrimPrefix(link, "/ui/"), "/"); len(parts) > 1 {
			kinds[parts[0]]++
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			continue
		}
		for _, l := range pageLinks(t, string(body)) {
			p, err := url.Parse(l)
			if err != nil {
				broken = append(broken, l+" (unparsable) linked from "+link)
				continue
			}
			if p.Host != "" || p.Scheme != "" || !strings.HasPrefix(p.Path, "/ui/") || p.Path == "/ui/logout" {
				continue // external, or an API address in an example
			}
			target := p.RequestURI()
			if _, ok := seen[target]; !ok {
				seen[target] = link
				queue = append(queue, target)
			}
		}
	}
	for _, b := range broken {
		t.Errorf("broken link: %s", b)
	}
	// The crawl must have reached every kind of page, and every feature
	// version, service, dataset and model of the catalog.
	want := map[string]int{"features": len(f.cfg.Features) + 1, "services": len(f.cfg.Services), "datasets": len(f.reg.Datasets()),
		"models": len(f.reg.Models()), "sources": len(f.cfg.Sources), "entities": len(f.cfg.Entities), "static": 2}
	for k, n := range want {
		if kinds[k] < n {
			t.Errorf("the crawl reached %d %s pages, want at least %d", kinds[k], k, n)
		}
	}
	t.Logf("crawled %d addresses: %v", len(seen), kinds)
}
