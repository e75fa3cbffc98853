import { describe, expect, it } from "vitest";
import { compileTemplate, unknownPlaceholders } from "../../src/mail/render.js";

describe("compileTemplate", () => {
  it("fills placeholders with or without inner spaces", () => {
    const template = compileTemplate("Hello {{name}}, your plan is {{ plan }}.");
    expect(template.render({ name: "Bob", plan: "pro" })).toBe("Hello Bob, your plan is pro.");
  });

  it("matches placeholder names case-insensitively against lowercased CSV headers", () => {
    const template = compileTemplate("{{First_Name}} {{LAST-NAME}} from {{company.city}}");
    expect(template.render({ first_name: "An", "last-name": "Nguyễn", "company.city": "Huế" })).toBe(
      "An Nguyễn from Huế",
    );
  });

  it("lists each placeholder once, lowercased, in order of first use", () => {
    expect(compileTemplate("{{ Name }} {{email}} {{NAME}} {{plan}}").placeholders).toEqual([
      "name",
      "email",
      "plan",
    ]);
  });

  it("renders an unknown field as an empty string", () => {
    expect(compileTemplate("Hi {{name}}!").render({})).toBe("Hi !");
  });

  it("does not find inherited object properties as fields", () => {
    expect(compileTemplate("[{{constructor}}][{{toString}}]").render({})).toBe("[][]");
  });

  it("escapes & < > \" and ' in substituted values, not in the template", () => {
    const template = compileTemplate('<p title="{{name}}">{{name}} & co</p>');
    expect(template.render({ name: `Tom & "Jerry" <b>'s</b>` }, { escapeHtml: true })).toBe(
      '<p title="Tom &amp; &quot;Jerry&quot; &lt;b&gt;&#39;s&lt;/b&gt;">Tom &amp; &quot;Jerry&quot; &lt;b&gt;&#39;s&lt;/b&gt; & co</p>',
    );
  });

  it("leaves values unescaped by default, for plain text", () => {
    expect(compileTemplate("{{name}}").render({ name: "Tom & Jerry <x>" })).toBe("Tom & Jerry <x>");
  });

  it("leaves a literal {{ that is not a valid placeholder as it is", () => {
    const source = "{{ not valid }} {{}} {{na me}} {{a|b}} {{ open and {name}}";
    const template = compileTemplate(source);
    expect(template.placeholders).toEqual([]);
    expect(template.render({ name: "Bob" })).toBe(source);
  });

  it("fills the inner placeholder of extra braces and keeps the rest", () => {
    expect(compileTemplate("{{{name}}}").render({ name: "Bob" })).toBe("{Bob}");
  });

  it("does not treat a placeholder split across lines as one", () => {
    expect(compileTemplate("{{\nname\n}}").placeholders).toEqual([]);
  });

  it("renders a template without placeholders unchanged", () => {
    expect(compileTemplate("Plain text.").render({ name: "Bob" })).toBe("Plain text.");
    expect(compileTemplate("").render({})).toBe("");
  });
});

describe("unknownPlaceholders", () => {
  it("lists placeholders no field provides, across templates, once each", () => {
    const templates = [
      compileTemplate("Hi {{name}}, {{plan}} ends {{RENEWAL}}"),
      compileTemplate("<p>{{email}} {{plan}} {{city}} {{renewal}}</p>"),
    ];
    expect(unknownPlaceholders(templates, ["plan"])).toEqual(["renewal", "city"]);
  });

  it("always knows email and name and compares field names case-insensitively", () => {
    const templates = [compileTemplate("{{Email}} {{NAME}} {{City}}")];
    expect(unknownPlaceholders(templates, new Set(["CITY"]))).toEqual([]);
  });
});
